"""Synthetic opinions with planted cohorts, for tests, demos and sanity checks.

:func:`make_opinions` draws respondents from a few cohorts. Each cohort
holds a position on every question; a respondent's answer is their cohort's
position plus personal noise, cut into options (an ordered-probit model):

* ordinal questions on a ``likert_points`` agreement scale;
* Polis-style statements answered disagree / pass / agree (pass is the
  narrow middle band);

Missing answers can be like a Polis conversation's: people see a varying
number of statements, and later statements are seen by fewer people. The
planted cohort is kept in ``metadata["planted_cohort"]`` with two
cohort-dependent attributes (``age``, ``region``), so that recovery and the
metadata profiles can be checked.

Survey weights with a known answer: draw the sample with ``cohort_shares``
and give ``population_shares``, the cohorts' shares of the population the
sample stands for. Each respondent then gets a weight (an under-sampled
cohort's above 1) such that the weighted share of every planted cohort is
exactly its population share, while the unweighted share is its sample share.

:func:`write_wide` saves a wide table plus a ``codebook.json`` that
:func:`persona_engine.ingest.read_opinions` reads back; :func:`write_polis`
saves the statements as a Polis export folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from persona_engine.errors import DataError
from persona_engine.opinion_data import MISSING, OpinionData, Question, Source

AGREE_OPTIONS = ("disagree", "pass", "agree")
LIKERT_OPTIONS = {
    5: ("strongly disagree", "disagree", "neither agree nor disagree", "agree", "strongly agree"),
    7: ("strongly disagree", "disagree", "somewhat disagree", "neither agree nor disagree",
        "somewhat agree", "agree", "strongly agree"),
}
TOPICS = (
    "public transport", "a carbon tax", "rent control", "a higher minimum wage", "police funding",
    "nuclear power", "school vouchers", "universal basic income", "cycling lanes", "military spending",
    "foreign aid", "public broadcasting", "gun control", "immigration", "free university tuition",
    "road building", "organic farming subsidies", "a four-day week", "housing density", "tax cuts",
    "drug decriminalisation", "space exploration", "rural broadband", "public health care",
    "wind farms", "online voting", "a sugar tax", "local libraries", "tolls on motorways",
    "childcare support", "pension increases", "arts funding", "a wealth tax", "border controls",
    "lowering the voting age", "remote work rights", "animal welfare rules", "privatised water",
    "more speed cameras", "a national service year",
)
REGIONS = ("north", "south", "east", "west")
PASS_BAND = 0.15
"""Half-width of the latent band answered 'pass', in standard deviations (about 12% pass)."""


def make_opinions(
    n_respondents: int = 600,
    n_cohorts: int = 4,
    n_likert: int = 10,
    n_statements: int = 20,
    likert_points: int = 5,
    noise: float = 1.0,
    separation: float = 1.5,
    cohort_shares=None,
    missingness: str | float = "polis",
    min_seen: int = 8,
    population_shares=None,
    weight_jitter: float = 0.25,
    random_state: int = 0,
) -> OpinionData:
    """Draw respondents from ``n_cohorts`` planted cohorts.

    Parameters
    ----------
    n_likert, n_statements:
        Ordinal ``likert_points``-point agreement questions, and Polis-style
        disagree / pass / agree statements. Questions are interleaved.
    noise:
        Standard deviation of a respondent's personal deviation from their
        cohort's position on each question. Cohort positions have standard
        deviation ``separation``. With the defaults (1.0 and 1.5) noise is
        moderate: about 7 answers in 10 are the cohort's most common answer;
        at ``noise=2`` about 6 in 10, and cohorts blur into each other.
    cohort_shares:
        ``(n_cohorts,)`` expected share of each cohort (default: equal).
    missingness:
        ``"polis"`` (each respondent sees between ``min_seen`` and all
        questions, earlier ones more often), ``"none"``, or a share of
        answers missing completely at random.
    population_shares:
        ``(n_cohorts,)`` each cohort's share of the population, to make
        survey weights (default: none). Respondent ``i`` of cohort ``c``
        weighs ``population_share[c] · n / n_c``, times a log-normal jitter
        (standard deviation ``weight_jitter`` on the log scale, as real
        weights vary within a cell) rescaled so that the cohort's weights
        still sum to ``population_share[c] · n``. Weights average 1.
    random_state:
        Seed; the same arguments give the same data.

    Returns an :class:`OpinionData` with ``metadata`` columns
    ``planted_cohort`` ("A", "B", ...), ``age`` and ``region``, and weights
    when ``population_shares`` is given.
    """
    if n_cohorts < 1 or n_respondents < n_cohorts:
        raise DataError(f"cannot plant {n_cohorts} cohorts among {n_respondents} respondents")
    if likert_points not in LIKERT_OPTIONS and n_likert:
        raise DataError(f"no {likert_points}-point scale", expected=f"one of {sorted(LIKERT_OPTIONS)}")
    rng = np.random.default_rng(random_state)
    shares = np.full(n_cohorts, 1 / n_cohorts) if cohort_shares is None else np.asarray(cohort_shares, float)
    if shares.shape != (n_cohorts,) or np.any(shares < 0) or shares.sum() <= 0:
        raise DataError("cohort_shares must give one non-negative share per cohort")
    cohort = np.sort(rng.choice(n_cohorts, size=n_respondents, p=shares / shares.sum()))

    kinds = np.array(["likert"] * n_likert + ["statement"] * n_statements)
    kinds = kinds[rng.permutation(len(kinds))]
    n_questions = len(kinds)
    # Positions: a question-wide lean plus each cohort's own view.
    lean = rng.normal(0, 0.5, size=n_questions)
    position = lean[None, :] + rng.normal(0, separation, size=(n_cohorts, n_questions))
    latent = position[cohort] + rng.normal(0, noise, size=(n_respondents, n_questions))
    # Cuts scale with the overall spread, so every option stays in use at any noise.
    spread = np.sqrt(0.25 + separation**2 + noise**2)

    questions, answers = _answer_questions(kinds, latent, spread, likert_points)
    answers[~_seen(rng, n_respondents, n_questions, missingness, min_seen)] = MISSING
    metadata = pd.DataFrame({
        "planted_cohort": np.array([chr(ord("A") + c) for c in cohort], dtype=object),
        "age": np.clip(np.round(rng.normal(30 + 10 * (cohort % 4), 10)), 18, 90).astype(int),
        "region": np.array(REGIONS, dtype=object)[
            np.where(rng.random(n_respondents) < 0.6, cohort % len(REGIONS), rng.integers(0, 4, n_respondents))],
    })
    ids = np.array([f"r{i + 1:04d}" for i in range(n_respondents)], dtype=object)
    # Weights are drawn last, so that asking for them leaves the answers as they were.
    weights = None if population_shares is None else _weights(rng, cohort, population_shares, weight_jitter)
    name = "synthetic planted cohorts" + ("" if weights is None else ", weighted")
    return OpinionData(ids, tuple(questions), answers, metadata, weights=weights,
                       source=Source(name=name, format="synthetic"))


def _answer_questions(kinds: np.ndarray, latent: np.ndarray, spread: float,
                      likert_points: int) -> tuple[list[Question], np.ndarray]:
    """The questions, and each respondent's answer: their latent position cut into the options.

    ``latent`` is ``(n_respondents, n_questions)``; returns the questions and
    the answers ``(n_respondents, n_questions)`` int16.
    """
    questions, answers = [], np.empty(latent.shape, dtype=np.int16)
    counter = {"likert": 0, "statement": 0}
    for j, kind in enumerate(kinds):
        counter[kind] += 1
        topic = TOPICS[j % len(TOPICS)] + ("" if j < len(TOPICS) else f" ({j // len(TOPICS) + 1})")
        if kind == "likert":
            options = LIKERT_OPTIONS[likert_points]
            cuts = np.linspace(-1.2, 1.2, likert_points - 1) * spread
            questions.append(Question(f"L{counter[kind]:02d}", f"How much do you agree: more {topic}?", options))
        else:
            options = AGREE_OPTIONS
            cuts = np.array([-PASS_BAND, PASS_BAND]) * spread
            questions.append(Question(f"S{counter[kind]:02d}", f"We need more {topic}.", options,
                                      option_values=(-1.0, 0.0, 1.0)))
        answers[:, j] = np.searchsorted(cuts, latent[:, j])
    return questions, answers


def _weights(rng, cohort: np.ndarray, population_shares, jitter: float) -> np.ndarray:
    """``(n,)`` weights under which cohort ``c``'s share is ``population_shares[c]`` (normalised)."""
    n_cohorts, n = int(cohort.max()) + 1, len(cohort)
    target = np.asarray(population_shares, dtype=np.float64)
    if target.shape != (n_cohorts,) or np.any(target < 0) or target.sum() <= 0:
        raise DataError("population_shares must give one non-negative share per cohort")
    sizes = np.bincount(cohort, minlength=n_cohorts)
    if np.any((sizes == 0) & (target > 0)):
        raise DataError("a cohort with a population share has no respondents to weight",
                        expected="more respondents, or a cohort_shares above 0 for every cohort")
    spread = np.exp(rng.normal(0, jitter, size=n))
    in_cohort = np.bincount(cohort, weights=spread, minlength=n_cohorts)
    return spread * (target / target.sum() * n)[cohort] / in_cohort[cohort]


def _seen(rng, n: int, q: int, missingness, min_seen: int) -> np.ndarray:
    """``(n, q)`` bool: which questions each respondent answered."""
    if missingness == "none":
        return np.ones((n, q), dtype=bool)
    if missingness == "polis":
        # Votes per person are long-tailed (median about half the statements);
        # statement j is shown with weight exp(-1.5 j / q), so the last is seen
        # by about a fifth as many people as the first.
        n_seen = np.clip(np.round(np.exp(rng.normal(np.log(q / 2), 0.6, size=n))), min(min_seen, q), q)
        keys = -1.5 * np.arange(q)[None, :] / q + rng.gumbel(size=(n, q))
        rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
        return rank < n_seen[:, None]
    if isinstance(missingness, (int, float)) and 0 <= missingness < 1:
        return rng.random((n, q)) >= missingness
    raise DataError(f"unknown missingness {missingness!r}", expected="'polis', 'none' or a share in [0, 1)")


# ------------------------------------------------------------------- writing
def write_wide(data: OpinionData, folder: str | Path, file_name: str = "answers.csv") -> Path:
    """Write ``answers.csv`` (one row per respondent, answers as option labels,
    blank = missing, then the weight if any and metadata) and ``codebook.json`` into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame({"respondent_id": data.respondent_ids})
    for j, question in enumerate(data.questions):
        labels = np.array(question.options + ("",), dtype=object)
        table[question.id] = labels[data.answers[:, j]]  # MISSING (-1) picks the blank
    if data.weights is not None:
        table["weight"] = data.weights
    meta = data.metadata.reset_index(drop=True)
    table = pd.concat([table, meta], axis=1)
    table.to_csv(folder / file_name, index=False)
    codebook = {
        "name": data.source.name,
        "id": "respondent_id",
        **({"weight": "weight"} if data.weights is not None else {}),
        "questions": {
            q.id: {"text": q.text, "options": list(q.options), "ordinal": q.ordinal,
                   **({"values": list(q.option_values)} if q.option_values is not None else {})}
            for q in data.questions
        },
        "metadata": {str(c): {"text": str(c).replace("_", " ")} for c in meta.columns},
    }
    (folder / "codebook.json").write_text(json.dumps(codebook, indent=2), encoding="utf-8")
    return folder


def write_polis(data: OpinionData, folder: str | Path) -> Path:
    """Write the disagree / pass / agree questions as a Polis export folder
    (``participants-votes.csv``, ``comments.csv``). Other questions are left out."""
    statements = [j for j, q in enumerate(data.questions) if q.options == AGREE_OPTIONS]
    if not statements:
        raise DataError("no disagree / pass / agree statements to write as a Polis export")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    votes = data.answers[:, statements].astype(np.float64) - 1  # codes 0,1,2 -> votes -1,0,1
    votes[data.answers[:, statements] == MISSING] = np.nan
    table = pd.DataFrame({
        "participant": np.arange(data.n_respondents),
        "group-id": "",
        "n-comments": 0,
        "n-votes": np.sum(~np.isnan(votes), axis=1),
        "n-agree": np.sum(votes == 1, axis=1),
        "n-disagree": np.sum(votes == -1, axis=1),
    })
    vote_columns = pd.DataFrame(votes, columns=[str(c) for c in range(len(statements))]).astype("Int64")
    pd.concat([table, vote_columns], axis=1).to_csv(folder / "participants-votes.csv", index=False)
    pd.DataFrame({
        "timestamp": 1_700_000_000_000 + 60_000 * np.arange(len(statements)),
        "datetime": "",
        "comment-id": np.arange(len(statements)),
        "author-id": 0,
        "agrees": np.sum(votes == 1, axis=0),
        "disagrees": np.sum(votes == -1, axis=0),
        "moderated": 1,
        "comment-body": [data.questions[j].text for j in statements],
    }).to_csv(folder / "comments.csv", index=False)
    return folder
