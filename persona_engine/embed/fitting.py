"""How the collaborative-filtering embedders are fitted.

Both embedders in :mod:`persona_engine.embed.factorization` minimise, over the *observed*
answers only, the mean over respondents of their loss plus a penalty::

    J(U, Q) = (1/n) sum_i [ sum_{j answered by i} loss(u_i, Q_j; answer_ij) + reg |u_i|^2 ]
              + reg |V|^2

where ``u_i`` (``dim`` numbers) is respondent i's vector and ``Q_j`` question
j's parameters (``V`` its vectors, penalised, plus unpenalised biases).
Writing the penalty on ``V`` as weight decay on the *mean* loss makes the best
``reg`` nearly independent of how many respondents there are, so it can be
chosen on a subsample.

Given the questions, each respondent's problem is small and convex. It is
solved by majorise-minimise steps: the loss's curvature in ``u`` is bounded by
a fixed matrix ``sum_j C_j`` over the questions the respondent answered
(exact for squared error; Böhning's bound ``V_j^T (I - 11^T/K) V_j / 2`` for a
softmax), so every step ``u <- u - (sum_j C_j + 2 reg I)^{-1} grad`` lowers
the objective, needs no line search, and reuses one Cholesky factor per
respondent. That solver is the paper's fold-in for new people, and it also
places every training respondent at the end of the fit, so a respondent's
vector does not depend on whether they were in the training data.

Training passes over mini-batches of respondents; each batch's one forward
pass gives both the respondents' step and an Adam step on the questions.

An embedder plugs in by providing (B respondents, q questions, d = dim):

``init_question_params(codes, observed, n_options, generator) -> dict``
    initial question parameters; keys in ``penalised`` get weight decay.
``loss_and_grads(U, params, codes, observed, question_grads) -> (loss, grad_U, grads)``
    the loss summed over observed cells, its gradient ``(B, d)`` in ``U``
    and, if asked, in each question parameter. ``codes`` at unobserved cells
    are arbitrary valid indices and must not matter.
``curvature(params) -> (q, d, d)``
    per-question matrices whose sum over a respondent's answered questions
    bounds the Hessian of their loss.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

from persona_engine.evaluation.protocol import holdout_split
from persona_engine.evaluation.metrics import macro_accuracy
from persona_engine.progress import Progress

PROGRESS_STAGE = "embedding"
"""The stage an embedder's fit reports: ``progress("embedding", pass, total, history row)`` after each pass."""

PLACEMENT_CHUNK = 4096  # respondents per solver chunk; bounds memory at (chunk, q, K) floats


def idle_cores() -> int:
    """Cores this process may use minus the current load (at least one).

    On an idle machine that is every core. On a busy one it is fewer, because
    torch's threads wait for each other at every operation and one thread on
    an occupied core stalls them all: on 2 cores with other work running, a
    fit on 2 threads took 5-6 times as long as on 1.
    """
    cores = len(os.sched_getaffinity(0))
    return int(np.clip(round(cores - os.getloadavg()[0]), 1, cores))


@contextmanager
def torch_threads(n_threads: int | None) -> Iterator[None]:
    """Run torch on ``n_threads`` threads (None = :func:`idle_cores`), then restore."""
    wanted = n_threads or idle_cores()
    before = torch.get_num_threads()
    torch.set_num_threads(wanted)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def batch_tensors(codes: np.ndarray, rows: np.ndarray | slice) -> tuple[torch.Tensor, torch.Tensor]:
    """Option codes (long, missing replaced by 0) and the observed mask for some respondents.

    ``codes`` has shape ``(n_respondents, n_questions)`` with -1 for missing.
    """
    block = torch.from_numpy(np.ascontiguousarray(codes[rows]).astype(np.int64))
    observed = block >= 0
    return block.clamp_(min=0), observed


def respondent_curvature(model, params, observed: torch.Tensor, reg: float) -> torch.Tensor:
    """Cholesky factors ``(B, d, d)`` of each respondent's curvature bound plus ``2 reg I``."""
    per_question = model.curvature(params)                            # (q, d, d)
    q, d, _ = per_question.shape
    bound = (observed.float() @ per_question.reshape(q, d * d)).view(-1, d, d)
    return torch.linalg.cholesky(bound + 2 * reg * torch.eye(d))


def respondent_step(U, grad_U, factor, reg) -> torch.Tensor:
    """One majorise-minimise step for each row of ``U`` (B, d)."""
    rhs = (grad_U + 2 * reg * U).unsqueeze(-1)
    return U - torch.cholesky_solve(rhs, factor).squeeze(-1)


def fold_in(
    model,
    params: dict[str, torch.Tensor],
    codes: np.ndarray,
    reg: float,
    start: torch.Tensor | None = None,
    max_steps: int = 300,
    tol: float = 1e-4,
) -> torch.Tensor:
    """Each respondent's vector with the questions frozen (the fold-in).

    Minimises ``sum_j loss(u_i, Q_j) + reg |u_i|^2`` for every respondent,
    chunk by chunk, until no coordinate moves more than ``tol`` in a step.

    Parameters
    ----------
    codes:
        Shape ``(m, n_questions)``, option index or -1.
    start:
        Shape ``(m, dim)`` warm start; zeros (the prior mean) by default.

    Returns shape ``(m, dim)`` float32.
    """
    m = codes.shape[0]
    U = torch.zeros(m, model.dim) if start is None else start.clone()
    with torch.no_grad():
        for lo in range(0, m, PLACEMENT_CHUNK):
            rows = slice(lo, min(m, lo + PLACEMENT_CHUNK))
            c, observed = batch_tensors(codes, rows)
            factor = respondent_curvature(model, params, observed, reg)
            u = U[rows]
            for _step in range(max_steps):
                _, grad, _ = model.loss_and_grads(u, params, c, observed, False)
                new = respondent_step(u, grad, factor, reg)
                moved = float((new - u).abs().max()) if len(u) else 0.0
                u = new
                if moved < tol:
                    break
            U[rows] = u
    return U


def train(
    model,
    codes: np.ndarray,
    n_options: np.ndarray,
    reg: float,
    generator: torch.Generator,
    progress: Progress | None = None,
    progress_offset: int = 0,
    progress_total: int | None = None,
    stage: str = "fit",
    tol: float = 1e-4,
) -> tuple[torch.Tensor, dict[str, torch.Tensor], list[dict]]:
    """Fit respondent vectors and question parameters on ``codes``.

    Parameters
    ----------
    codes:
        Shape ``(n_respondents, n_questions)``, option index or -1 (missing).
    n_options:
        Shape ``(n_questions,)``.
    progress, progress_offset, progress_total:
        ``progress("embedding", progress_offset + passes done, progress_total,
        history row)`` after each pass (:mod:`persona_engine.progress`);
        ``progress_total`` defaults to this fit's passes.

    Returns ``(U (n, dim), question params, history)``; history holds one
    ``{"stage", "epoch", "loss"}`` per pass, loss being ``J`` as above.
    ``tol`` is the placement tolerance (largest coordinate move per step).
    """
    n = codes.shape[0]
    all_codes, all_observed = batch_tensors(codes, slice(None))
    params = model.init_question_params(all_codes, all_observed, n_options, generator)
    del all_codes, all_observed
    for tensor in params.values():
        tensor.requires_grad_(True)
    optimizer = torch.optim.Adam(params.values(), lr=model.learning_rate)
    batch = min(model.batch_size, n)
    epochs = model.epochs_for(n)
    # Cosine decay to zero, so the last passes settle instead of jittering.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=epochs * math.ceil(n / batch))
    total = progress_total or epochs
    U = torch.zeros(n, model.dim)
    history = []
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator).numpy()
        running = 0.0
        for lo in range(0, n, batch):
            rows = np.sort(order[lo : lo + batch])
            c, observed = batch_tensors(codes, rows)
            frozen = {k: v.detach() for k, v in params.items()}
            u = U[rows]
            with torch.no_grad():
                loss, grad_u, grads = model.loss_and_grads(u, frozen, c, observed, True)
                factor = respondent_curvature(model, frozen, observed, reg)
                U[rows] = respondent_step(u, grad_u, factor, reg)
            decay = 0.0
            for name, tensor in params.items():
                tensor.grad = grads[name] / len(rows)
                if name in model.penalised:
                    tensor.grad += 2 * reg * tensor.detach()
                    decay += float((tensor.detach() ** 2).sum())
            optimizer.step()
            schedule.step()
            running += float(loss) + reg * float((u * u).sum()) + reg * decay * len(rows)
        history.append({"stage": stage, "epoch": epoch, "loss": running / n})
        if progress is not None:
            progress(PROGRESS_STAGE, progress_offset + epoch + 1, total, dict(history[-1]))
    params = {k: v.detach() for k, v in params.items()}
    U = fold_in(model, params, codes, reg, start=U, tol=tol)
    return U, params, history


def choose_reg(
    model,
    answers: np.ndarray,
    n_options: np.ndarray,
    grid: list[float],
    repeats: int,
    generator: torch.Generator,
    progress: Progress | None,
    progress_total: int,
) -> tuple[float, dict[str, float], list[dict]]:
    """Pick ``reg`` from ``grid`` by held-out accuracy on ``answers``.

    For each of ``repeats`` splits, 20% of each respondent's answers are
    hidden (:func:`persona_engine.evaluation.protocol.holdout_split`), the embedder is fitted
    on the rest with each ``reg`` and scored by macro accuracy on the hidden
    cells. Among the settings within 1e-9 of the best mean score the
    strongest regularisation wins (smoother vectors for the same accuracy).
    If no respondent has enough answers to hold any out, the middle of the
    grid is used.

    Returns ``(reg, {"<reg>": mean score}, history)``.
    """
    rng = np.random.default_rng(model.random_state)
    scores: dict[float, list[float]] = {reg: [] for reg in grid}
    history: list[dict] = []
    for _ in range(repeats):
        # A seed of its own, so it never coincides with a split the caller evaluates on.
        split = holdout_split(answers, random_state=int(rng.integers(2**31)))
        for reg in grid:
            U, params, h = train(model, split.train_answers, n_options, reg, generator,
                                 progress, len(history), progress_total,
                                 stage=f"select reg={reg:g}", tol=1e-3)
            with torch.no_grad():
                predicted = model.proba(U, params).argmax(-1).numpy()
            scores[reg].append(macro_accuracy(predicted, answers, split.test_mask))
            history += h
    # NaN when no respondent had enough answers to hold any out.
    mean = {reg: float(np.mean(v)) for reg, v in scores.items()}
    finite = [score for score in mean.values() if np.isfinite(score)]
    if not finite:
        return float(grid[len(grid) // 2]), {f"{reg:g}": None for reg in grid}, history
    chosen = max(reg for reg in grid if mean[reg] >= max(finite) - 1e-9)
    table = {f"{reg:g}": (score if np.isfinite(score) else None) for reg, score in mean.items()}
    return float(chosen), table, history


def auto_epochs(n_respondents: int, batch_size: int, target_steps: int, low: int, high: int) -> int:
    """Passes so that the questions get about ``target_steps`` Adam updates."""
    per_pass = math.ceil(n_respondents / max(1, min(batch_size, n_respondents)))
    return int(np.clip(math.ceil(target_steps / per_pass), low, high))
