"""Cohorts: groups of respondents who answer alike, found in the embedding space.

:class:`CohortFinder` clusters respondent vectors ``(n_respondents, dim)``
(from :mod:`persona_engine.embed.factorization`) with plain scikit-learn k-means or a
Gaussian mixture. Each cohort's persona is its centroid, a point in the same
space, which the steering stage turns into a soft prompt.

How many cohorts (``n_cohorts="auto"``)
    For every k in ``k_range`` the finder fits the model and scores the
    resulting cohorts by their *stability* (the mean adjusted Rand index
    between them and the cohorts fitted on ``n_resamples`` bootstrap
    resamples of the respondents, every respondent placed by the resample's
    model) and by the Bayesian information criterion (BIC). Among the ks
    whose stability reaches ``min_stability``, the one with the lowest BIC
    wins (BIC rewards every cohort that the data support; the stability gate
    refuses cohorts that would not come back in another sample); if no k
    reaches it, the most stable k. Cohorts are only worth reading,
    and their majority answers only predict their members' answers, if they
    come back when the sample changes; on small or sparse data only coarse
    splits do, so fewer, larger cohorts are chosen there. Inertia (the elbow
    curve) and the silhouette are reported in ``k_choice_`` but not used:
    on opinion embeddings, a continuum rather than separated blobs, the
    silhouette nearly always prefers k = 2, and the best-separated split can
    be a small group of outliers that says little about everyone else.
    For k-means the BIC is that of a diagonal-covariance Gaussian mixture
    whose components are the k-means cohorts (weights = cohort shares,
    means = centroids, variances = within-cohort variances); for the mixture
    it is the mixture's own BIC. With ``n_resamples=0`` the lowest BIC wins.
    On more than ``max_respondents`` respondents the ks are scored on a random
    sample of that many (the bootstraps of 3,000 people tell stable cohorts
    from unstable ones about as well as those of 100,000, at a fraction of the
    cost), and the chosen k is then fitted on everyone;
    ``k_choice_respondents_`` says how many were used.

Respondents with few answers
    Their vectors rest on little evidence. Pass ``sample_weight`` = each
    respondent's number of answers (``data.observed.sum(axis=1)``) so that
    they pull centroids, BIC and stability less; everyone still gets a
    cohort. On the sparse Polis sample conversations this is worth about half
    a point of held-out accuracy.

Small cohorts
    Cohorts smaller than ``min_cohort_size`` are merged, smallest first, into
    the cohort with the nearest centroid, so a fixed ``n_cohorts`` is an upper
    bound. Merging happens for every candidate k before it is scored.

Stable labels
    Cohorts are numbered by size, largest = 0 (ties: the cohort holding the
    earliest respondent first), so the same data and ``random_state`` always
    give the same numbering.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score, silhouette_score
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from persona_engine.cohorts.partition import (cohort_centroids, merge_small_cohorts, partition_bic,
                                              within_cohort_inertia)
from persona_engine.errors import DataError

CONFIG_VERSION = 1
METHODS = ("kmeans", "gmm")
SILHOUETTE_SAMPLE = 3000
"""Silhouettes are computed on at most this many respondents (it is quadratic)."""
K_CHOICE_RESPONDENTS = 3000
"""``n_cohorts="auto"`` scores the candidate ks on a random sample of at most this many respondents."""
MIN_RESPONDENTS = 10
"""Fewest respondents a study's cohorts are found among (:func:`~persona_engine.study.fit_study` checks).

Below it two cohorts would hold a handful of people each, the bootstrap
refits that score their stability often draw one kind of respondent only,
and the map falls back from UMAP to PCA (:class:`~persona_engine.latent_map.LatentMap`)."""


class CohortFinder(BaseEstimator, ClusterMixin):
    """Find cohorts of respondents in an embedding space.

    Parameters
    ----------
    method:
        ``"kmeans"`` (default) or ``"gmm"`` (Gaussian mixture, soft clusters).
    n_cohorts:
        ``"auto"`` (choose from ``k_range``, see the module docstring) or a
        fixed number.
    k_range:
        Smallest and largest k tried by ``"auto"``, both included.
    min_cohort_size:
        Smallest allowed cohort: a count of respondents (int >= 1) or a share
        of them (float < 1). Smaller cohorts are merged into the nearest.
    covariance_type:
        The mixture's covariance for ``method="gmm"`` (scikit-learn's names).
    n_resamples:
        Bootstrap refits per k for the stability score (``"auto"`` only).
    min_stability:
        Smallest stability (mean adjusted Rand index over resamples) a k needs
        to be chosen by ``"auto"``; among those, the lowest BIC wins.
    n_init:
        Restarts of k-means / the mixture; the best fit is kept.
    random_state:
        Seed for every random choice (initialisation, silhouette sample).
    n_threads:
        Threads for k-means / the mixture (``None``: the library's default).
    max_respondents:
        ``"auto"`` scores the ks on a random sample of at most this many
        respondents (``None``: everyone); the chosen k is fitted on everyone.

    Attributes
    ----------
    labels_:
        ``(n_respondents,)`` int64 cohort of each training respondent.
    centroids_:
        ``(n_cohorts_, dim)`` the cohort personas: each cohort's (weighted)
        mean vector (of ``vectors`` when ``fit`` was given them).
    n_cohorts_:
        Number of cohorts found.
    sizes_:
        ``(n_cohorts_,)`` respondents per cohort.
    k_choice_:
        One row per k tried: ``k``, ``n_cohorts`` (after merging small
        cohorts), ``inertia`` (within-cohort sum of squares: the elbow
        curve), ``silhouette``, ``bic``, ``stability`` (NaN for a fixed k),
        ``smallest_cohort``, ``chosen``.
    k_choice_respondents_:
        How many respondents the ks were scored on (all of them unless
        there were more than ``max_respondents``).
    model_:
        The fitted scikit-learn estimator of the chosen k.
    component_cohort_:
        ``(n_components,)`` the cohort each model component was merged into.
    """

    def __init__(
        self,
        method: str = "kmeans",
        n_cohorts: int | str = "auto",
        k_range: tuple[int, int] = (2, 10),
        min_cohort_size: int | float = 0.02,
        covariance_type: str = "diag",
        n_resamples: int = 12,
        min_stability: float = 0.7,
        n_init: int = 10,
        random_state: int = 0,
        n_threads: int | None = 1,
        max_respondents: int | None = K_CHOICE_RESPONDENTS,
    ) -> None:
        self.method = method
        self.n_cohorts = n_cohorts
        self.k_range = k_range
        self.min_cohort_size = min_cohort_size
        self.covariance_type = covariance_type
        self.n_resamples = n_resamples
        self.min_stability = min_stability
        self.n_init = n_init
        self.random_state = random_state
        self.n_threads = n_threads
        self.max_respondents = max_respondents

    # ------------------------------------------------------------- fitting
    def fit(self, embeddings, y=None, sample_weight=None, vectors=None) -> "CohortFinder":
        """Find cohorts among ``embeddings`` ``(n_respondents, dim)``.

        ``sample_weight`` ``(n_respondents,)``, optional, weighs respondents
        in the centroids, the BIC and the stability refits; pass each
        respondent's number of answers (see the module docstring). The
        mixture (``method="gmm"``) ignores it except in ``centroids_``.
        ``vectors`` ``(n_respondents, d)``, optional: when the points
        clustered are not the respondents' vectors (cohorts found among
        answers, :mod:`persona_engine.cohorts.space`), ``centroids_`` are the
        cohorts' means of these instead.
        """
        X = _as_matrix(embeddings)
        weight = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if weight is not None and weight.shape != (len(X),):
            raise DataError(f"sample_weight has shape {weight.shape} for {len(X)} respondents")
        if weight is not None and (not np.isfinite(weight).all() or (weight < 0).any() or weight.sum() <= 0):
            raise DataError("sample_weight must be finite, non-negative and not all zero")
        persona_space = X if vectors is None else np.asarray(vectors, dtype=np.float64)
        if len(persona_space) != len(X):
            raise DataError(f"{len(persona_space)} vectors for {len(X)} respondents")
        if self.method not in METHODS:
            raise DataError(f"unknown cohort method '{self.method}'", expected=" or ".join(METHODS))
        min_size = self._min_size(len(X))
        ks = self._candidate_ks(X, min_size)
        rng = np.random.default_rng(self.random_state)
        sample = self._k_choice_sample(len(X), len(ks), rng)
        Xs, ws = (X, weight) if sample is None else (X[sample], None if weight is None else weight[sample])
        sample_min = min_size if sample is None else max(1, round(min_size * len(Xs) / len(X)))
        # The same resamples for every k, so that their stabilities compare like for like.
        # Drawn among respondents of positive weight: the others cannot move a
        # cohort, and a resample of only them would have nothing to fit.
        pool = np.arange(len(Xs)) if ws is None else np.flatnonzero(ws > 0)
        resamples = [pool[rng.integers(0, len(pool), len(Xs))] for _ in range(self.n_resamples if len(ks) > 1 else 0)]
        rows, fits = [], {}
        # One thread: for survey-sized data k-means is fastest single-threaded, and
        # OpenMP threads spin-waiting on busy cores made it 100x slower here.
        with threadpool_limits(self.n_threads):
            for k in ks:
                model, mapping, centroids = self._fit_cohorts(Xs, k, ws, sample_min, self.random_state, self.n_init)
                labels = mapping[_components(model, Xs)]
                fits[k] = (model, mapping)
                rows.append({
                    "k": k,
                    "n_cohorts": len(centroids),
                    "inertia": within_cohort_inertia(Xs, labels, centroids, ws),
                    "silhouette": self._silhouette(Xs, labels),
                    "bic": model.bic(Xs) if self.method == "gmm" else partition_bic(Xs, labels, centroids, ws),
                    "stability": self._stability(Xs, labels, k, ws, sample_min, resamples),
                    "smallest_cohort": int(np.bincount(labels).min()),
                })
            k_choice = pd.DataFrame(rows)
            chosen = self._choose(k_choice)
            if sample is not None:  # the chosen k, fitted on everyone
                model, mapping, _ = self._fit_cohorts(X, chosen, weight, min_size, self.random_state, self.n_init)
                fits[chosen] = (model, mapping)
        k_choice["chosen"] = k_choice["k"] == chosen
        self.k_choice_ = k_choice
        self.k_choice_respondents_ = len(Xs)
        self.model_, mapping = fits[chosen]
        self._set_cohorts(X, mapping, weight, persona_space)
        return self

    def predict(self, embeddings) -> np.ndarray:
        """Cohort of each point ``(m, dim)`` (points like those fitted on); returns ``(m,)`` int64."""
        self._check_fitted()
        return self.component_cohort_[_components(self.model_, _as_matrix(embeddings))]

    # --------------------------------------------------------- internals
    def _min_size(self, n: int) -> int:
        size = self.min_cohort_size
        if size is None:
            return 1
        if isinstance(size, float) and 0 < size < 1:
            return max(1, int(np.ceil(size * n)))
        if size >= 1:
            return int(size)
        raise DataError(f"min_cohort_size {size!r} is not usable",
                        expected="a count >= 1 or a share between 0 and 1")

    def _k_choice_sample(self, n: int, n_ks: int, rng) -> np.ndarray | None:
        """Rows to score the ks on, or None for everyone (one k, or no more than ``max_respondents``)."""
        if n_ks < 2 or self.max_respondents is None or n <= self.max_respondents:
            return None
        return np.sort(rng.choice(n, int(self.max_respondents), replace=False))

    def _candidate_ks(self, X: np.ndarray, min_size: int) -> list[int]:
        n_distinct = len(np.unique(X, axis=0))
        if n_distinct < 2 and self.n_cohorts == "auto":
            raise DataError("all respondent vectors are identical: nothing in their answers tells them "
                            "apart, so there are no cohorts to find", expected="respondents whose answers differ")
        if self.n_cohorts == "auto":
            low, high = (int(v) for v in self.k_range)
            if not 1 <= low <= high:
                raise DataError(f"k_range {self.k_range} is not usable", expected="(low, high) with 1 <= low <= high")
            # More cohorts than min_size allows would only be merged away again.
            high = min(high, max(len(X) // max(min_size, 1), low), n_distinct)
            return list(range(min(low, high), high + 1))
        if isinstance(self.n_cohorts, (int, np.integer)) and not isinstance(self.n_cohorts, bool) \
                and self.n_cohorts >= 1:
            # A fixed k is an upper bound: a bootstrap resample of a small study can
            # draw one kind of respondent only, and then it has one cohort.
            return [int(min(self.n_cohorts, n_distinct))]
        raise DataError(f"n_cohorts {self.n_cohorts!r} is not usable", expected="'auto' or a whole number >= 1")

    def _fit_cohorts(self, X, k, weight, min_size, seed, n_init):
        """Fit the model with k components, then merge small cohorts.

        Returns ``(model, component -> cohort mapping, centroids)``.
        """
        with warnings.catch_warnings():
            # Repeated vectors (respondents with identical answers) make these harmless.
            warnings.simplefilter("ignore", ConvergenceWarning)
            if self.method == "kmeans":
                model = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(X, sample_weight=weight)
            else:
                model = GaussianMixture(n_components=k, covariance_type=self.covariance_type,
                                        n_init=max(1, n_init // 3), random_state=seed).fit(X)
        mapping, centroids = merge_small_cohorts(X, _components(model, X), k, min_size, weight)
        return model, mapping, centroids

    def _stability(self, X, labels, k, weight, min_size, resamples) -> float:
        """Mean adjusted Rand index between ``labels`` and refits on bootstrap resamples."""
        if not resamples:
            return float("nan")
        scores = []
        for r, rows in enumerate(resamples):
            w = None if weight is None else weight[rows]
            # Fewer restarts than the main fit: this is a score, not the answer.
            seed = None if self.random_state is None else self.random_state + 1 + r
            model, mapping, _ = self._fit_cohorts(X[rows], k, w, min_size, seed, 3)
            scores.append(adjusted_rand_score(labels, mapping[_components(model, X)]))
        return float(np.mean(scores))

    def _silhouette(self, X: np.ndarray, labels: np.ndarray) -> float:
        if not 2 <= len(np.unique(labels)) < len(X):
            return float("nan")
        sample = min(len(X), SILHOUETTE_SAMPLE)
        return float(silhouette_score(X, labels, sample_size=sample, random_state=self.random_state))

    def _choose(self, k_choice: pd.DataFrame) -> int:
        candidates = k_choice
        if k_choice["stability"].notna().any():
            candidates = k_choice[k_choice["stability"] >= self.min_stability]
            if candidates.empty:
                return int(k_choice.loc[k_choice["stability"].idxmax(), "k"])
        return int(candidates.loc[candidates["bic"].idxmin(), "k"])

    def _set_cohorts(self, X: np.ndarray, mapping: np.ndarray, weight: np.ndarray | None,
                     vectors: np.ndarray) -> None:
        components = _components(self.model_, X)
        labels = mapping[components]
        # Number cohorts by size, largest first, ties by earliest respondent.
        sizes = np.bincount(labels, minlength=mapping.max() + 1)
        first = np.array([np.flatnonzero(labels == c)[0] for c in range(len(sizes))])
        order = np.lexsort((first, -sizes))
        new_id = np.empty_like(order)
        new_id[order] = np.arange(len(order))
        self.component_cohort_ = new_id[mapping].astype(np.int64)
        self.labels_ = self.component_cohort_[components]
        self.n_cohorts_ = int(len(order))
        self.sizes_ = np.bincount(self.labels_, minlength=self.n_cohorts_)
        self.centroids_ = cohort_centroids(vectors, self.labels_, self.n_cohorts_, weight)

    def _check_fitted(self) -> None:
        if not hasattr(self, "component_cohort_"):
            raise DataError("this CohortFinder has not been fitted yet", expected="fit() before predict()")

    # ------------------------------------------------------------ saving
    def get_config(self) -> dict:
        """JSON-able hyper-parameters and fitted sizes (arrays go to :meth:`state_arrays`)."""
        params = self.get_params()
        params["k_range"] = [int(v) for v in params["k_range"]]
        return {"class": type(self).__name__, "version": CONFIG_VERSION, **params,
                "fitted_method": "gmm" if isinstance(self.model_, GaussianMixture) else "kmeans",
                "n_cohorts_": self.n_cohorts_}

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The fitted arrays, name -> array, for safetensors."""
        self._check_fitted()
        arrays = {"labels": self.labels_, "centroids": self.centroids_,
                  "component_cohort": self.component_cohort_}
        if isinstance(self.model_, GaussianMixture):
            arrays.update(weights=self.model_.weights_, means=self.model_.means_,
                          covariances=self.model_.covariances_,
                          precisions_cholesky=self.model_.precisions_cholesky_)
        else:
            arrays["cluster_centers"] = self.model_.cluster_centers_
        return {name: np.ascontiguousarray(a) for name, a in arrays.items()}

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray],
                   k_choice: pd.DataFrame | None = None) -> "CohortFinder":
        """Rebuild a fitted finder from :meth:`get_config` and :meth:`state_arrays`."""
        if config.get("version") != CONFIG_VERSION:
            raise DataError(f"cohort model version {config.get('version')} is not supported",
                            expected=f"version {CONFIG_VERSION}")
        params = {k: config[k] for k in cls().get_params() if k in config}
        params["k_range"] = tuple(params.get("k_range", (2, 10)))
        finder = cls(**params)
        centers = arrays.get("means") if config.get("fitted_method") == "gmm" else arrays.get("cluster_centers")
        if config.get("fitted_method") == "gmm":
            model = GaussianMixture(n_components=len(centers), covariance_type=finder.covariance_type)
            model.weights_, model.means_ = arrays["weights"], arrays["means"]
            model.covariances_, model.precisions_cholesky_ = arrays["covariances"], arrays["precisions_cholesky"]
        else:
            model = KMeans(n_clusters=len(centers))
            model.cluster_centers_ = centers
        finder.model_ = model
        finder.component_cohort_ = arrays["component_cohort"].astype(np.int64)
        finder.labels_ = arrays["labels"].astype(np.int64)
        finder.centroids_ = arrays["centroids"]
        finder.n_cohorts_ = int(len(finder.centroids_))
        finder.sizes_ = np.bincount(finder.labels_, minlength=finder.n_cohorts_)
        finder.k_choice_ = k_choice if k_choice is not None else pd.DataFrame()
        return finder


# ------------------------------------------------------------------ pieces
def _as_matrix(embeddings) -> np.ndarray:
    X = np.asarray(embeddings, dtype=np.float64)
    if X.ndim != 2 or len(X) < 2:
        raise DataError(f"embeddings have shape {X.shape}", expected="(n_respondents >= 2, dim)")
    if not np.isfinite(X).all():
        raise DataError("embeddings contain NaN or infinite values", expected="finite numbers")
    return X


def _components(model, X: np.ndarray) -> np.ndarray:
    """The model component (k-means cluster or mixture component) of each row of ``X``."""
    if isinstance(model, GaussianMixture):
        return model.predict(X)
    centers = model.cluster_centers_
    # Plain numpy: sklearn's parallel argmin spins OpenMP threads, slow on busy cores.
    squared = (centers**2).sum(axis=1)[None, :] - 2.0 * X @ centers.T
    return np.argmin(squared, axis=1)
