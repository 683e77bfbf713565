"""Tests for the collaborative-filtering embedders (persona_engine.embed.factorization).

Fits run on one torch thread: the data are small, and on a busy machine
several threads only wait for each other.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from persona_engine.embed.factorization import (
    EMBEDDERS,
    PaperFactorization,
    SoftmaxFactorization,
    embedder_from_state,
)
from persona_engine.embed.fitting import batch_tensors
from persona_engine.errors import DataError
from persona_engine.ingest import read_opinions
from persona_engine.opinion_data import MISSING, OpinionData, Question
from persona_engine.evaluation.protocol import holdout_split
from persona_engine.evaluation.metrics import macro_accuracy
from persona_engine.evaluation.references import question_majority

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def gss_answers() -> tuple[np.ndarray, np.ndarray]:
    """GSS spending items as option codes: too much 0, about right 1, too little 2, -1 missing."""
    data = read_opinions(SAMPLE / "gss_spending")
    return data.answers, data.n_options


def polis_answers(conversation: str) -> tuple[np.ndarray, np.ndarray]:
    """A Polis conversation's votes (disagree 0, pass 1, agree 2, -1 unseen), rejected comments dropped."""
    data = read_opinions(SAMPLE / "polis" / conversation)
    return data.answers, data.n_options


def mixed_answers(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Small structured data with 2 to 5 options per question and 40% missing."""
    rng = np.random.default_rng(seed)
    n_options = np.array([2, 3, 5, 4, 2, 3, 5, 3, 2, 4, 3, 5])
    people = rng.normal(size=(n, 2))
    answers = np.empty((n, len(n_options)), dtype=np.int16)
    for j, k in enumerate(n_options):
        logits = people @ rng.normal(size=(2, k)) * 1.5
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        answers[:, j] = [rng.choice(k, p=row) for row in p]
    answers[rng.random(answers.shape) < 0.4] = MISSING
    return answers, n_options


def held_out_accuracy(embedder, answers, n_options, seed=0) -> tuple[float, float]:
    split = holdout_split(answers, random_state=seed)
    embedder.fit(split.train_answers, n_options)
    predicted = embedder.predict(embedder.respondent_factors_)
    majority = np.broadcast_to(question_majority(split.train_answers, n_options), answers.shape)
    return (macro_accuracy(predicted, answers, split.test_mask),
            macro_accuracy(majority, answers, split.test_mask))


@pytest.fixture(scope="module")
def gss():
    return gss_answers()


# --------------------------------------------------------------------- quality
def test_default_beats_question_majority_on_gss(gss):
    answers, n_options = gss
    embedder = SoftmaxFactorization(random_state=0, n_threads=1)
    accuracy, majority = held_out_accuracy(embedder, answers, n_options)
    assert accuracy > majority + 0.02, (accuracy, majority)


def test_default_beats_question_majority_on_polis():
    answers, n_options = polis_answers("brexit-consensus")
    embedder = SoftmaxFactorization(random_state=0, n_threads=1)
    accuracy, majority = held_out_accuracy(embedder, answers, n_options)
    assert accuracy > majority, (accuracy, majority)


def test_new_respondents_fold_in_with_questions_frozen(gss):
    """Respondents unseen in training, placed from part of their answers, predict the rest."""
    answers, n_options = gss
    rng = np.random.default_rng(1)
    new = rng.random(len(answers)) < 0.25
    embedder = SoftmaxFactorization(reg=0.18, n_epochs=15, n_threads=1)
    embedder.fit(answers[~new], n_options)
    questions_before = embedder.option_factors_.copy()
    split = holdout_split(answers[new], random_state=0)
    vectors = embedder.transform(split.train_answers)
    assert vectors.shape == (new.sum(), embedder.dim)
    np.testing.assert_array_equal(embedder.option_factors_, questions_before)
    accuracy = macro_accuracy(embedder.predict(vectors), answers[new], split.test_mask)
    majority = np.broadcast_to(question_majority(answers[~new], n_options), split.test_mask.shape)
    assert accuracy > macro_accuracy(majority, answers[new], split.test_mask) + 0.02


# ---------------------------------------------------------------- behaviour
@pytest.mark.parametrize("model", [SoftmaxFactorization, PaperFactorization])
def test_fold_in_of_own_answers_lands_on_fitted_vector(gss, model):
    answers, n_options = gss[0][:500], gss[1]
    embedder = model(reg=model.default_reg_grid[3], n_epochs=12, n_threads=1)
    embedder.fit(answers, n_options)
    placed = embedder.transform(answers)
    fitted = embedder.respondent_factors_
    scale = np.abs(fitted).max()
    assert scale > 0.05  # not a collapsed fit, where every vector is trivially the origin
    assert np.abs(placed - fitted).max() < 0.01 * scale
    observed = answers != MISSING
    same = embedder.predict(placed) == embedder.predict(fitted)
    assert same[observed].mean() > 0.995
    hits_placed = (embedder.predict(placed) == answers)[observed].mean()
    hits_fitted = (embedder.predict(fitted) == answers)[observed].mean()
    assert abs(hits_placed - hits_fitted) < 0.005


def test_respondent_without_answers_lands_at_origin(gss):
    answers, n_options = gss[0][:300], gss[1]
    embedder = SoftmaxFactorization(reg=0.18, n_epochs=5, n_threads=1).fit(answers, n_options)
    vector = embedder.transform(np.full((1, len(n_options)), MISSING))
    np.testing.assert_allclose(vector, 0.0)


@pytest.mark.parametrize("model", [SoftmaxFactorization, PaperFactorization])
def test_same_seed_same_factors(model):
    answers, n_options = mixed_answers()
    first = model(random_state=3, n_epochs=8, reg_grid=model.default_reg_grid[2:4],
                   n_threads=1).fit(answers, n_options)
    again = model(random_state=3, n_epochs=8, reg_grid=model.default_reg_grid[2:4],
                   n_threads=1).fit(answers, n_options)
    other = model(random_state=4, n_epochs=8, reg_grid=model.default_reg_grid[2:4],
                   n_threads=1).fit(answers, n_options)
    np.testing.assert_array_equal(first.respondent_factors_, again.respondent_factors_)
    assert first.reg_ == again.reg_
    assert not np.allclose(first.respondent_factors_, other.respondent_factors_)


@pytest.mark.parametrize("model", [SoftmaxFactorization, PaperFactorization])
def test_predict_proba_is_a_distribution_over_real_options(model):
    answers, n_options = mixed_answers()
    embedder = model(reg=model.default_reg_grid[2], n_epochs=8, n_threads=1).fit(answers, n_options)
    points = np.vstack([embedder.respondent_factors_[:20],
                        np.random.default_rng(0).normal(scale=2.0, size=(5, embedder.dim))])
    proba = embedder.predict_proba(points)
    assert proba.shape == (25, len(n_options), n_options.max())
    real = np.arange(n_options.max())[None, :] < n_options[:, None]
    np.testing.assert_allclose(proba.sum(-1), 1.0, atol=1e-5)
    assert (proba[:, ~real] == 0).all()
    assert (proba[:, real] > 0).any(axis=0).all()
    np.testing.assert_array_equal(embedder.predict(points), proba.argmax(-1))


@pytest.mark.parametrize("model", [SoftmaxFactorization, PaperFactorization])
def test_missing_cells_do_not_enter_the_loss(model):
    answers, n_options = mixed_answers(n=64)
    embedder = model(reg=0.1, n_epochs=2, n_threads=1).fit(answers, n_options)
    params = embedder._question_params()
    U = torch.from_numpy(embedder.respondent_factors_) + 0.3  # away from the optimum: grads nonzero
    codes, observed = batch_tensors(answers, slice(None))
    assert (observed.numpy() == (answers != MISSING)).all()
    scrambled = codes.clone()
    rng = np.random.default_rng(0)
    for j, k in enumerate(n_options):  # any other valid option in every missing cell
        missing = ~observed[:, j]
        scrambled[missing, j] = torch.from_numpy(rng.integers(0, k, int(missing.sum())))
    assert (scrambled != codes).any()
    loss, grad_U, grads = embedder.loss_and_grads(U, params, codes, observed, True)
    loss2, grad_U2, grads2 = embedder.loss_and_grads(U, params, scrambled, observed, True)
    assert float(loss) > 0 and float(grad_U.abs().max()) > 0
    assert float(loss) == float(loss2)
    torch.testing.assert_close(grad_U, grad_U2)
    for name in grads:
        torch.testing.assert_close(grads[name], grads2[name])


def test_paper_model_uses_option_values_and_predicts_nearest_option():
    answers, _ = mixed_answers()
    answers = answers[:, :3]  # 2, 3 and 5 options
    questions = [
        Question("a", "A?", ("no", "yes")),
        Question("b", "B?", ("disagree", "pass", "agree"), option_values=(-1, 0, 1)),
        Question("c", "C?", tuple("vwxyz"), option_values=(0, 1, 2, 3, 10)),
    ]
    data = OpinionData(respondent_ids=np.arange(len(answers)), questions=questions, answers=answers)
    embedder = PaperFactorization(reg=0.05, n_epochs=8, n_threads=1).fit(data)
    np.testing.assert_allclose(embedder.option_scale_[2], [0, 0.1, 0.2, 0.3, 1.0], atol=1e-6)
    assert np.isnan(embedder.option_scale_[0, 2:]).all()
    scores = embedder._scores(torch.from_numpy(embedder.respondent_factors_),
                              embedder._question_params()).numpy()
    nearest = np.nanargmin(np.abs(scores[..., None] - embedder.option_scale_[None]), axis=-1)
    np.testing.assert_array_equal(embedder.predict(embedder.respondent_factors_), nearest)
    assert embedder.question_ids_ == ["a", "b", "c"]


# ----------------------------------------------------------------- plumbing
@pytest.mark.parametrize("model", [SoftmaxFactorization, PaperFactorization])
def test_save_and_load_round_trip(tmp_path, model):
    answers, n_options = mixed_answers()
    embedder = model(n_epochs=6, reg_grid=model.default_reg_grid[1:3], n_threads=1)
    embedder.fit(answers, n_options)
    (tmp_path / "embedder.json").write_text(json.dumps(embedder.get_config()))
    save_file(embedder.state_arrays(), str(tmp_path / "embedder.safetensors"))

    config = json.loads((tmp_path / "embedder.json").read_text())
    loaded = embedder_from_state(config, load_file(str(tmp_path / "embedder.safetensors")))
    assert type(loaded) is model and loaded.reg_ == embedder.reg_
    assert loaded.get_params() == embedder.get_params()
    np.testing.assert_array_equal(loaded.respondent_factors_, embedder.respondent_factors_)
    probe = answers[:30]
    np.testing.assert_array_equal(loaded.transform(probe), embedder.transform(probe))
    np.testing.assert_array_equal(loaded.predict_proba(loaded.respondent_factors_),
                                  embedder.predict_proba(embedder.respondent_factors_))
    assert loaded.history_ == embedder.history_
    with pytest.raises(DataError):
        EMBEDDERS["softmax" if model is PaperFactorization else "paper"].from_state(
            config, embedder.state_arrays())


def test_progress_reports_every_pass_up_to_the_total():
    answers, n_options = mixed_answers(n=120)
    calls = []
    SoftmaxFactorization(n_epochs=3, reg_grid=(0.1, 0.2), n_threads=1).fit(
        answers, n_options, progress=lambda stage, step, total, info: calls.append((stage, step, total, info)))
    assert {c[0] for c in calls} == {"embedding"}
    calls = [c[1:] for c in calls]
    steps = [c[0] for c in calls]
    assert steps == list(range(1, len(calls) + 1))
    assert all(total == len(calls) for _, total, _ in calls)
    stages = [info["stage"] for _, _, info in calls]
    assert stages[-1] == "done" and stages[-2] == "fit" and stages[0].startswith("select")
    assert {"stage", "epoch", "loss"} <= set(calls[-2][2])


def test_bad_input_is_a_data_error():
    answers, n_options = mixed_answers(n=50)
    with pytest.raises(DataError, match="not been fitted"):
        SoftmaxFactorization().transform(answers)
    bad = answers.copy()
    bad[3, 1] = n_options[1]  # one past the last option
    with pytest.raises(DataError, match="outside"):
        SoftmaxFactorization(n_epochs=1, reg=0.1, n_threads=1).fit(bad, n_options)
    embedder = SoftmaxFactorization(n_epochs=1, reg=0.1, n_threads=1).fit(answers, n_options)
    with pytest.raises(DataError):
        embedder.transform(answers[:, :5])
    with pytest.raises(DataError):
        embedder.predict_proba(np.zeros((2, embedder.dim + 1)))


def test_fit_uses_the_requested_threads_and_restores_torch():
    answers, n_options = mixed_answers(n=60)
    before = torch.get_num_threads()
    seen = []
    SoftmaxFactorization(n_epochs=1, reg=0.1, n_threads=1).fit(
        answers, n_options,
        progress=lambda stage, step, total, info: seen.append((info["stage"], torch.get_num_threads())))
    assert seen[-1][0] == "done"
    assert {threads for stage, threads in seen[:-1]} == {1}
    assert torch.get_num_threads() == before
