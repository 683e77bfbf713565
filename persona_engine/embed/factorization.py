"""Collaborative filtering: one vector per respondent from their answers.

Two embedders with the same scikit-learn style interface:

:class:`SoftmaxFactorization` (the default)
    Each question is a softmax over its own options:
    ``P(option o | respondent i, question j) = softmax_o(u_i . V_jo + b_jo)``,
    fitted by cross-entropy on the observed answers only.
:class:`PaperFactorization`
    The paper's (Li et al., NAACL 2024) matrix factorisation: answers scaled to
    [0, 1] per question, predicted as ``u_i . v_j + b_j``, fitted by squared
    error on the observed answers.

Both minimise the mean over respondents of (their loss + ``reg |u_i|^2``)
plus ``reg |V|^2``. Unless ``reg`` is given it is chosen from a grid by
held-out accuracy on (a subsample of) the respondents. How they are fitted,
and the fold-in of new respondents, is in :mod:`persona_engine.embed.fitting`.

Every embedder saves as ``get_config()`` (JSON-able dict) plus
``state_arrays()`` (name -> array, for safetensors) and loads with
``Class.from_state(config, arrays)`` or :func:`embedder_from_state`.

The base class and its two losses stay in one module (about 450 lines): each
loss is a few short methods that fill in the base's fitting contract and
reads best beside it.
"""

from __future__ import annotations

import numpy as np
import torch

from persona_engine.embed import fitting
from persona_engine.errors import DataError
from persona_engine.opinion_data import MISSING, OpinionData
from persona_engine.progress import Progress

CONFIG_VERSION = 1


def answer_matrix(
    X, n_options=None
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], list[str] | None]:
    """Read an embedder's input into plain arrays.

    ``X`` is an :class:`OpinionData` or an int array ``(n_respondents,
    n_questions)`` with -1 for missing; for an array, ``n_options`` (shape
    ``(n_questions,)``) gives each question's option count, else it is taken
    as the largest code seen plus one.

    Returns ``(answers (n, q) int16, n_options (q,) int64, each question's
    option positions on [0, 1], question ids or None)``.
    """
    if isinstance(X, OpinionData):
        return X.answers, X.n_options, [q.scaled_values() for q in X.questions], X.question_ids
    answers = np.asarray(X)
    if answers.ndim != 2 or answers.size == 0 or not np.issubdtype(answers.dtype, np.integer):
        raise DataError("answers must be a table of whole numbers, respondents by questions",
                        expected="an int array (n_respondents, n_questions) with -1 for missing")
    if n_options is None:
        n_options = np.maximum(answers.max(axis=0, initial=MISSING) + 1, 2)
    n_options = np.asarray(n_options, dtype=np.int64)
    check_codes(answers, n_options)
    return answers.astype(np.int16), n_options, [np.linspace(0, 1, int(k)) for k in n_options], None


def check_codes(answers: np.ndarray, n_options: np.ndarray) -> None:
    """Raise :class:`DataError` unless ``answers`` (m, q) holds -1 or valid option indices."""
    if answers.ndim != 2 or answers.shape[1] != len(n_options):
        raise DataError(f"answers have shape {answers.shape} for {len(n_options)} questions",
                        expected=f"(n_respondents, {len(n_options)})")
    bad = (answers < MISSING) | (answers >= n_options[None, :])
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise DataError(f"answer code {int(answers[i, j])} of respondent {i} is outside "
                        f"question {j}'s {int(n_options[j])} options",
                        expected="-1 for missing or an option index from 0")


class Factorization:
    """Fit, fold-in, predict and save; a subclass defines the answer model.

    Parameters
    ----------
    dim:
        Length of each respondent's vector (the paper uses 16).
    reg:
        Strength of the L2 penalty; ``None`` chooses it from ``reg_grid``.
    reg_grid:
        Values to choose ``reg`` from; ``None`` uses the model's
        ``default_reg_grid``.
    n_epochs:
        Training passes over the respondents; ``None`` picks 10 to 40 so
        that the questions get about 300 optimiser steps.
    batch_size, learning_rate:
        Respondents per step, and Adam's step size for the questions.
    reg_choice_respondents:
        At most this many respondents are used to choose ``reg``.
    random_state:
        Seeds initialisation, batch order and the validation splits.
    n_threads:
        Torch threads while fitting; ``None`` = the idle cores
        (:func:`persona_engine.embed.fitting.idle_cores`).

    Subclasses set ``name`` (stored in the config), ``_params`` (question
    parameter names; learned as ``<name>_`` attributes), ``penalised`` (those
    with weight decay), ``_extra_arrays`` / ``_extra_scalars`` (other learned
    attributes to save), ``default_reg_grid``, and the model methods listed
    in :mod:`persona_engine.embed.fitting`, plus ``proba(U, params)`` (option probabilities as a tensor).
    """

    name = ""
    _params: tuple[str, ...] = ()
    penalised: tuple[str, ...] = ()
    _extra_arrays: tuple[str, ...] = ()
    _extra_scalars: tuple[str, ...] = ()
    default_reg_grid: tuple[float, ...] = ()

    def __init__(
        self,
        dim: int = 16,
        reg: float | None = None,
        reg_grid: tuple[float, ...] | None = None,
        n_epochs: int | None = None,
        batch_size: int = 256,
        learning_rate: float = 0.03,
        reg_choice_respondents: int = 3000,
        random_state: int = 0,
        n_threads: int | None = None,
    ) -> None:
        self.dim = dim
        self.reg = reg
        self.reg_grid = reg_grid
        self.n_epochs = n_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.reg_choice_respondents = reg_choice_respondents
        self.random_state = random_state
        self.n_threads = n_threads

    # ------------------------------------------------------------- fitting
    def fit(self, X, n_options=None, *, progress: Progress | None = None):
        """Learn respondent vectors and question parameters from ``X``.

        ``X``: :class:`OpinionData`, or int array ``(n_respondents,
        n_questions)`` with -1 for missing plus ``n_options``
        ``(n_questions,)``. ``progress("embedding", done, total, info)``
        (:mod:`persona_engine.progress`) is called after every training pass
        (selection included), ``info`` being the pass's history row, and once
        more when all respondents are placed (``info["stage"]`` ``"done"``).
        Returns ``self``.
        """
        answers, n_opts, scaled, ids = answer_matrix(X, n_options)
        self.n_options_, self.question_ids_ = n_opts, ids
        self._set_option_scale(scaled)
        grid = [self.reg] if self.reg is not None else list(self.reg_grid or self.default_reg_grid)
        generator = torch.Generator().manual_seed(int(self.random_state))
        rows, repeats = self._reg_choice_plan(answers.shape[0], len(grid))
        epochs_select = self.epochs_for(len(rows)) * repeats * len(grid) if repeats else 0
        total = epochs_select + self.epochs_for(answers.shape[0]) + 1  # + placing everyone
        with fitting.torch_threads(self.n_threads):
            if repeats:
                self.reg_, self.validation_scores_, history = fitting.choose_reg(
                    self, answers[rows], n_opts, grid, repeats, generator, progress, total)
            else:
                self.reg_, self.validation_scores_, history = float(grid[0]), {}, []
            U, params, final = fitting.train(
                self, answers, n_opts, self.reg_, generator, progress, epochs_select, total)
        self.history_ = history + final
        self.respondent_factors_ = U.numpy()
        for name, value in params.items():
            setattr(self, name + "_", value.numpy())
        self._after_fit(U, params, answers)
        if progress is not None:
            progress(fitting.PROGRESS_STAGE, total, total,
                     {"stage": "done", "epoch": None, "loss": final[-1]["loss"]})
        return self

    def _reg_choice_plan(self, n: int, grid_size: int) -> tuple[np.ndarray, int]:
        """Respondents to choose ``reg`` on, and how many validation splits to average.

        Large data: a random ``reg_choice_respondents`` of them, one split.
        Small data: all of them and up to three splits, because one split of
        a few hundred people is too noisy to rank the grid.
        """
        if grid_size <= 1:
            return np.arange(0), 0
        if n > self.reg_choice_respondents:
            rng = np.random.default_rng(self.random_state)
            return np.sort(rng.choice(n, self.reg_choice_respondents, replace=False)), 1
        return np.arange(n), int(np.clip(self.reg_choice_respondents // n, 1, 3))

    def epochs_for(self, n_respondents: int) -> int:
        if self.n_epochs is not None:
            return int(self.n_epochs)
        return fitting.auto_epochs(n_respondents, self.batch_size, 300, 10, 40)

    # ---------------------------------------------------------- using a fit
    def transform(self, answers) -> np.ndarray:
        """Place respondents with the questions frozen (the paper's fold-in).

        ``answers``: int array ``(m, n_questions)`` with -1 for missing, or an
        :class:`OpinionData` with the same questions. Returns ``(m, dim)``
        float32; a respondent with no answers lands at the origin.
        """
        self._check_fitted()
        if isinstance(answers, OpinionData):
            if self.question_ids_ is not None and answers.question_ids != list(self.question_ids_):
                raise DataError("these answers are to other questions than the fitted ones",
                                expected=f"questions {', '.join(self.question_ids_[:5])}...")
            answers = answers.answers
        codes = np.atleast_2d(np.asarray(answers))
        check_codes(codes, self.n_options_)
        with fitting.torch_threads(self.n_threads):
            U = fitting.fold_in(self, self._question_params(), codes, self.reg_)
        return U.numpy()

    def predict_proba(self, embeddings) -> np.ndarray:
        """``P(option | vector, question)``, shape ``(m, n_questions, max_options)``.

        ``embeddings`` is ``(m, dim)``: respondents, centroids or any points
        between them. Entries past a question's options are 0.
        """
        self._check_fitted()
        U = torch.as_tensor(np.atleast_2d(np.asarray(embeddings, dtype=np.float32)))
        if U.shape[1] != self.dim:
            raise DataError(f"vectors have {U.shape[1]} dimensions", expected=f"{self.dim}")
        with torch.no_grad():
            return self.proba(U, self._question_params()).double().numpy()

    def predict(self, embeddings) -> np.ndarray:
        """Most likely option per question, shape ``(m, n_questions)`` int64."""
        return self.predict_proba(embeddings).argmax(axis=-1)

    def _question_params(self) -> dict[str, torch.Tensor]:
        return {name: torch.from_numpy(getattr(self, name + "_")) for name in self._params}

    def _option_mask(self) -> torch.Tensor:
        """``(n_questions, max_options)`` bool: which option slots are real."""
        k = np.arange(int(self.n_options_.max()))
        return torch.from_numpy(k[None, :] < self.n_options_[:, None])

    def _check_fitted(self) -> None:
        if not hasattr(self, "respondent_factors_"):
            raise DataError(f"this {type(self).__name__} has not been fitted yet",
                            expected="fit() before transform() or predict()")

    def _set_option_scale(self, scaled: list[np.ndarray]) -> None:
        pass

    def _after_fit(self, U, params, answers) -> None:
        pass

    # -------------------------------------------------------------- saving
    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in (
            "dim", "reg", "reg_grid", "n_epochs", "batch_size", "learning_rate",
            "reg_choice_respondents", "random_state", "n_threads")}

    def get_config(self) -> dict:
        """Hyper-parameters and learned scalars, JSON-able."""
        self._check_fitted()
        params = self.get_params()
        params["reg_grid"] = None if params["reg_grid"] is None else list(params["reg_grid"])
        return {
            "model": self.name,
            "version": CONFIG_VERSION,
            "params": params,
            "reg_": float(self.reg_),
            "n_options_": [int(k) for k in self.n_options_],
            "question_ids_": None if self.question_ids_ is None else list(self.question_ids_),
            "validation_scores_": dict(self.validation_scores_),
            "history_": list(self.history_),
            **{name: float(getattr(self, name)) for name in self._extra_scalars},
        }

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Learned arrays by attribute name (for safetensors)."""
        self._check_fitted()
        names = ("respondent_factors_", *(p + "_" for p in self._params), *self._extra_arrays)
        return {k: np.ascontiguousarray(getattr(self, k)) for k in names}

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]):
        """Rebuild a fitted embedder from :meth:`get_config` and :meth:`state_arrays`."""
        if config.get("model") != cls.name:
            raise DataError(f"saved embedder is '{config.get('model')}', not '{cls.name}'")
        params = dict(config["params"])
        if "selection_respondents" in params:  # studies saved before the rename
            params["reg_choice_respondents"] = params.pop("selection_respondents")
        if params.get("reg_grid") is not None:
            params["reg_grid"] = tuple(params["reg_grid"])
        self = cls(**params)
        self.reg_ = float(config["reg_"])
        self.n_options_ = np.asarray(config["n_options_"], dtype=np.int64)
        self.question_ids_ = config.get("question_ids_")
        self.validation_scores_ = dict(config.get("validation_scores_", {}))
        self.history_ = list(config.get("history_", []))
        for name in self._extra_scalars:
            setattr(self, name, float(config[name]))
        for name in ("respondent_factors_", *(p + "_" for p in cls._params), *cls._extra_arrays):
            if name not in arrays:
                raise DataError(f"saved embedder has no array '{name}'")
            setattr(self, name, np.asarray(arrays[name]))
        return self


class SoftmaxFactorization(Factorization):
    """Per-question softmax over options (the default embedder).

    ``logit(i, j, o) = u_i . V_jo + b_jo``; cross-entropy on observed answers
    only, so a missing answer is never read as an answer. Options are padded
    to the largest option count (padding gets logit -inf), and the logits are
    computed option-major, shape ``(max_options, B, n_questions)``, because
    torch's softmax over a short last axis is an order of magnitude slower.

    Hyper-parameters as in :class:`Factorization`. Learned attributes:
    ``respondent_factors_`` (n, dim), ``option_factors_``
    (n_questions, max_options, dim; zero on padding), ``option_bias_``
    (n_questions, max_options; -inf on padding), ``reg_``,
    ``validation_scores_`` (mean held-out accuracy per grid value),
    ``history_`` (one dict per training pass).
    """

    name = "softmax"
    _params = ("option_factors", "option_bias")
    penalised = ("option_factors",)
    default_reg_grid = (0.06, 0.09, 0.125, 0.18, 0.25, 0.35)

    def init_question_params(self, codes, observed, n_options, generator):
        mask = self._option_mask()
        q, k = mask.shape
        counts = torch.zeros(q, k).scatter_add_(1, codes.T, observed.T.float())
        # Start at the (smoothed) answer shares, i.e. at the majority baseline.
        shares = (counts + 1) / (counts.sum(1, keepdim=True) + torch.from_numpy(n_options)[:, None])
        factors = 0.3 * torch.randn(q, k, self.dim, generator=generator)
        return {"option_factors": factors * mask[..., None],
                "option_bias": shares.log().masked_fill(~mask, float("-inf"))}

    def _logits(self, U, params):
        """Shape ``(max_options, B, n_questions)``."""
        V, b = params["option_factors"], params["option_bias"]
        return torch.matmul(U, V.permute(1, 2, 0)) + b.T.unsqueeze(1)

    def proba(self, U, params):
        return torch.softmax(self._logits(U, params), dim=0).permute(1, 2, 0)

    def loss_and_grads(self, U, params, codes, observed, question_grads):
        log_p = torch.log_softmax(self._logits(U, params), dim=0)        # (K, B, q)
        chosen = codes.unsqueeze(0)
        loss = -(log_p.gather(0, chosen).squeeze(0) * observed).sum()
        # d loss / d logit = p - onehot(answer), and zero where nothing was answered.
        residual = log_p.exp_().scatter_add_(0, chosen, torch.full(chosen.shape, -1.0))
        residual *= observed
        V = params["option_factors"].transpose(0, 1)                     # (K, q, d)
        grad_U = torch.matmul(residual, V).sum(0)
        if not question_grads:
            return loss, grad_U, None
        grads = {"option_factors": torch.matmul(residual.transpose(1, 2), U).transpose(0, 1),
                 "option_bias": residual.sum(1).T}
        return loss, grad_U, grads

    def curvature(self, params):
        # Böhning: the softmax Hessian diag(p) - pp^T is at most (I - 11^T/K) / 2.
        V = params["option_factors"]                                     # (q, K, d)
        total = V.sum(1)
        k = torch.from_numpy(self.n_options_).float()[:, None, None]
        return 0.5 * (V.transpose(1, 2) @ V - total.unsqueeze(2) * total.unsqueeze(1) / k)


class PaperFactorization(Factorization):
    """The paper's matrix factorisation: squared error on answers scaled to [0, 1].

    Each answer becomes its option's position on [0, 1]
    (:meth:`Question.scaled_values`: ``option_values`` where known, else even
    spacing; unordered questions are spaced in listed order, as the paper
    does). Prediction ``s_ij = u_i . v_j + b_j``. The paper uses a plain dot
    product; the question bias ``b_j`` is added so that no dimension is spent
    on question means, and there is no respondent bias so that the vector
    alone determines the prediction (a point between respondents is still a
    persona). Question parameters are fitted by Adam as in the paper; given
    them, each respondent's vector is a ridge regression, solved exactly.

    ``predict`` is the option whose scaled value is nearest ``s``.
    ``predict_proba`` spreads ``s`` over the options with a Gaussian kernel,
    ``P(o) ∝ exp(-(s - x_o)^2 / (2 sigma^2))``, ``sigma`` = the residual
    standard deviation on the training answers (``residual_std_``).

    Hyper-parameters as in :class:`Factorization`. Learned attributes:
    ``respondent_factors_`` (n, dim), ``question_factors_`` (n_questions, dim), ``question_bias_``
    (n_questions,), ``option_scale_`` (n_questions, max_options; NaN on
    padding), ``residual_std_``, ``reg_``, ``validation_scores_``,
    ``history_``.
    """

    name = "paper"
    _params = ("question_factors", "question_bias")
    penalised = ("question_factors",)
    _extra_arrays = ("option_scale_",)
    _extra_scalars = ("residual_std_",)
    default_reg_grid = (0.0125, 0.025, 0.05, 0.1, 0.2, 0.4)

    def _set_option_scale(self, scaled):
        scale = np.full((len(scaled), max(len(s) for s in scaled)), np.nan, dtype=np.float32)
        for j, s in enumerate(scaled):
            scale[j, : len(s)] = s
        self.option_scale_ = scale
        self.residual_std_ = 0.25  # until the fit sets it; argmax does not depend on it

    def _targets(self, codes):
        scale = torch.from_numpy(np.nan_to_num(self.option_scale_))
        return scale.gather(1, codes.T).T                                # (B, q)

    def init_question_params(self, codes, observed, n_options, generator):
        mean = (self._targets(codes) * observed).sum(0) / observed.sum(0).clamp(min=1)
        factors = 0.3 * torch.randn(len(n_options), self.dim, generator=generator)
        return {"question_factors": factors, "question_bias": mean}

    def _scores(self, U, params):
        return U @ params["question_factors"].T + params["question_bias"]

    def loss_and_grads(self, U, params, codes, observed, question_grads):
        residual = (self._scores(U, params) - self._targets(codes)) * observed
        loss, grad_U = (residual ** 2).sum(), 2 * residual @ params["question_factors"]
        if not question_grads:
            return loss, grad_U, None
        grads = {"question_factors": 2 * residual.T @ U, "question_bias": 2 * residual.sum(0)}
        return loss, grad_U, grads

    def curvature(self, params):
        v = params["question_factors"]
        return 2 * v.unsqueeze(2) * v.unsqueeze(1)                       # exact for squares

    def proba(self, U, params):
        s = self._scores(U, params)                                      # (B, q)
        scale = torch.from_numpy(self.option_scale_).T.unsqueeze(1)      # (K, 1, q)
        logits = -((s - scale) ** 2) / (2 * self.residual_std_ ** 2)
        return torch.softmax(logits.nan_to_num(float("-inf")), dim=0).permute(1, 2, 0)

    def _after_fit(self, U, params, answers):
        codes, observed = fitting.batch_tensors(answers, slice(None))
        with torch.no_grad():
            squares = float(self.loss_and_grads(U, params, codes, observed, False)[0])
        self.residual_std_ = max(1e-3, (squares / max(1, int(observed.sum()))) ** 0.5)


EMBEDDERS = {cls.name: cls for cls in (SoftmaxFactorization, PaperFactorization)}
"""Embedder classes by the ``model`` name stored in their config."""


def embedder_from_state(config: dict, arrays: dict[str, np.ndarray]) -> Factorization:
    """Load any saved embedder (dispatch on ``config['model']``)."""
    cls = EMBEDDERS.get(config.get("model"))
    if cls is None:
        raise DataError(f"unknown embedder '{config.get('model')}'",
                        expected=f"one of {', '.join(EMBEDDERS)}")
    return cls.from_state(config, arrays)
