"""The latent map: a 2-D (or 3-D) picture of the persona space, and its way back.

UMAP lays the respondents' embeddings out on a plane. UMAP itself cannot be
saved without pickle and its own inverse transform is slow and needs the fitted
object, so both directions between the map and the latent space are done by
kernel-weighted nearest-neighbour interpolation over the respondents, which
needs only two arrays (the map coordinates and the latent vectors):

* ``inverse_transform(points)``: any spot on the map becomes a latent vector,
  the Gaussian-weighted mean of the latent vectors of the respondents drawn
  nearest to it. Moving the cursor moves the persona smoothly; a spot far from
  every respondent gets its nearest respondents' mean, and
  :meth:`LatentMap.distance_to_data` tells how far out it is.
* ``transform(vectors)``: any latent vector (a cohort centroid, a new person
  placed by fold-in) is drawn where its nearest respondents in latent space
  are drawn.

UMAP compiles with numba on its first call in a process (see docs/design.md), so the
map is computed once when a study is fitted and stored with it. On more than
``max_respondents`` respondents UMAP lays out a random sample of that many and
everyone else is drawn by ``transform`` among them (UMAP's cost grows with
the number of points; the picture of 20,000 is as readable as that of 100,000).
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.neighbors import NearestNeighbors

from persona_engine.errors import DataError

MAP_RESPONDENTS = 20_000
"""UMAP lays out at most this many respondents; the others are placed among them."""
SHORT_LAYOUT_RESPONDENTS = 5000
"""Above this many points UMAP optimises the layout for 200 epochs instead of 500.

(UMAP's own default switches at 10,000; with thousands of points 200 epochs already settle the layout,
in well under half the time.)"""


class LatentMap:
    """UMAP layout of embeddings with array-only forward and inverse maps.

    Parameters
    ----------
    n_components:
        2 for the map, 3 for an optional 3-D view.
    n_neighbors, min_dist, metric:
        UMAP's own knobs (clamped for very small studies).
    interpolation_neighbors:
        How many respondents each interpolated point is averaged over.
    random_state:
        Seed for UMAP (and the sample); with a seed the layout is reproducible.
    max_respondents:
        UMAP lays out a random sample of at most this many respondents; the
        rest are placed by :meth:`transform` (``None``: everyone by UMAP).

    Attributes
    ----------
    coords_:
        ``(n_respondents, n_components)`` float32 map coordinates.
    embeddings_:
        ``(n_respondents, dim)`` float32 latent vectors the map was fitted on.
    bandwidth_map_, bandwidth_latent_:
        Kernel widths (map units and latent units) used by the interpolation:
        the median distance from a respondent to its
        ``interpolation_neighbors``-th neighbour.
    method_:
        ``"umap"``, or ``"pca"`` for studies too small for UMAP.
    layout_respondents_:
        How many respondents UMAP laid out (all unless there were more than
        ``max_respondents``).
    """

    def __init__(
        self,
        n_components: int = 2,
        n_neighbors: int = 15,
        min_dist: float = 0.1,
        metric: str = "euclidean",
        interpolation_neighbors: int = 10,
        random_state: int | None = 0,
        max_respondents: int | None = MAP_RESPONDENTS,
    ) -> None:
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.interpolation_neighbors = interpolation_neighbors
        self.random_state = random_state
        self.max_respondents = max_respondents

    # ------------------------------------------------------------------ fit
    def fit(self, embeddings: np.ndarray) -> "LatentMap":
        """Lay out ``embeddings`` (n_respondents, dim) on the map."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or len(embeddings) < 3:
            raise DataError(
                f"a map needs at least 3 respondents, got {len(embeddings)}",
                expected="a study with more respondents",
            )
        n = len(embeddings)
        sample = None
        if self.max_respondents is not None and n > max(self.max_respondents, 10):
            rng = np.random.default_rng(self.random_state)
            sample = np.sort(rng.choice(n, int(self.max_respondents), replace=False))
        laid_out = embeddings if sample is None else embeddings[sample]
        if len(laid_out) < 10:
            coords, self.method_ = self._pca(laid_out), "pca"
        else:
            coords, self.method_ = self._umap(laid_out), "umap"
        self.coords_ = np.asarray(coords, dtype=np.float32)
        self.embeddings_ = laid_out
        self.layout_respondents_ = len(laid_out)
        if sample is not None:  # everyone else, drawn among their nearest laid-out respondents
            self._set_bandwidths()
            coords = self.transform(embeddings)
            coords[sample] = self.coords_
            self.coords_, self.embeddings_ = coords, embeddings
        self._set_bandwidths()
        return self

    def _umap(self, embeddings: np.ndarray) -> np.ndarray:
        import umap  # imported here: it costs seconds and numba compilation

        reducer = umap.UMAP(
            n_components=self.n_components,
            n_neighbors=min(self.n_neighbors, len(embeddings) - 1),
            min_dist=self.min_dist,
            metric=self.metric,
            random_state=self.random_state,
            # a seed makes UMAP single-threaded; without one it cannot be reproduced
            n_jobs=1 if self.random_state is not None else -1,
            n_epochs=200 if len(embeddings) > SHORT_LAYOUT_RESPONDENTS else None,
        )
        with warnings.catch_warnings():
            # Near-duplicate vectors (tiny or degenerate studies) defeat the spectral start;
            # UMAP then starts from random positions itself, which is all a user needs to know.
            warnings.filterwarnings("ignore", message="Spectral initialisation failed")
            return reducer.fit_transform(embeddings)

    def _pca(self, embeddings: np.ndarray) -> np.ndarray:
        centred = embeddings - embeddings.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        coords = centred @ vt[: self.n_components].T
        if coords.shape[1] < self.n_components:  # fewer latent dims than map dims
            coords = np.pad(coords, ((0, 0), (0, self.n_components - coords.shape[1])))
        return coords

    def _set_bandwidths(self) -> None:
        k = self._k()
        self.bandwidth_map_ = self._kth_distance(self.coords_, k)
        self.bandwidth_latent_ = self._kth_distance(self.embeddings_, k)

    def _k(self) -> int:
        return int(max(1, min(self.interpolation_neighbors, len(self.coords_) - 1)))

    @staticmethod
    def _kth_distance(points: np.ndarray, k: int) -> float:
        # +1 because each point is its own nearest neighbour
        distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
        width = float(np.median(distances[:, -1]))
        return width if width > 0 else 1.0

    # ----------------------------------------------------------- directions
    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Map coordinates ``(m, n_components)`` for latent ``vectors`` ``(m, dim)``."""
        self._check_fitted()
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if vectors.shape[1] != self.embeddings_.shape[1]:
            raise DataError(
                f"vectors have {vectors.shape[1]} dimensions, the map was fitted on "
                f"{self.embeddings_.shape[1]}"
            )
        return _interpolate(vectors, self.embeddings_, self.coords_, self._k(), self.bandwidth_latent_)

    def inverse_transform(self, points: np.ndarray) -> np.ndarray:
        """Latent vectors ``(m, dim)`` for map ``points`` ``(m, n_components)``."""
        self._check_fitted()
        points = np.atleast_2d(np.asarray(points, dtype=np.float32))
        if points.shape[1] != self.coords_.shape[1]:
            raise DataError(
                f"points have {points.shape[1]} coordinates, the map has {self.coords_.shape[1]}"
            )
        return _interpolate(points, self.coords_, self.embeddings_, self._k(), self.bandwidth_map_)

    def distance_to_data(self, points: np.ndarray) -> np.ndarray:
        """How far each map point is from its nearest respondent, in kernel widths.

        Shape ``(m,)``. Below ~1 the point sits among respondents; well above
        it, the persona there is an extrapolation from the nearest ones.
        """
        self._check_fitted()
        points = np.atleast_2d(np.asarray(points, dtype=np.float32))
        distances, _ = NearestNeighbors(n_neighbors=1).fit(self.coords_).kneighbors(points)
        return distances[:, 0] / self.bandwidth_map_

    def _check_fitted(self) -> None:
        if not hasattr(self, "coords_"):
            raise DataError("the map has not been fitted yet", expected="fit() or a saved study")

    # --------------------------------------------------------------- saving
    def get_config(self) -> dict:
        """JSON-able hyper-parameters and fitted scalars."""
        config = {
            "n_components": self.n_components,
            "n_neighbors": self.n_neighbors,
            "min_dist": self.min_dist,
            "metric": self.metric,
            "interpolation_neighbors": self.interpolation_neighbors,
            "random_state": self.random_state,
            "max_respondents": self.max_respondents,
        }
        if hasattr(self, "coords_"):
            config.update(
                method=self.method_,
                bandwidth_map=self.bandwidth_map_,
                bandwidth_latent=self.bandwidth_latent_,
            )
        return config

    def state_arrays(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        return {"coords": self.coords_, "embeddings": self.embeddings_}

    @classmethod
    def from_state(cls, config: dict, arrays: dict[str, np.ndarray]) -> "LatentMap":
        fitted = {k: config[k] for k in ("method", "bandwidth_map", "bandwidth_latent") if k in config}
        params = {k: v for k, v in config.items() if k not in fitted}
        latent_map = cls(**params)
        latent_map.coords_ = np.asarray(arrays["coords"], dtype=np.float32)
        latent_map.embeddings_ = np.asarray(arrays["embeddings"], dtype=np.float32)
        if len(latent_map.coords_) != len(latent_map.embeddings_):
            raise DataError("the saved map's coordinates and vectors have different lengths")
        latent_map.method_ = fitted.get("method", "umap")
        if "bandwidth_map" in fitted:
            latent_map.bandwidth_map_ = float(fitted["bandwidth_map"])
            latent_map.bandwidth_latent_ = float(fitted["bandwidth_latent"])
        else:
            latent_map._set_bandwidths()
        return latent_map


def _interpolate(
    queries: np.ndarray, sources: np.ndarray, targets: np.ndarray, k: int, bandwidth: float
) -> np.ndarray:
    """Gaussian-weighted mean of ``targets`` at the ``k`` nearest ``sources`` of each query."""
    distances, index = NearestNeighbors(n_neighbors=k).fit(sources).kneighbors(queries)
    # Shift by the nearest distance so far-away queries do not underflow to all-zero weights.
    scaled = (distances - distances[:, :1]) / bandwidth
    weights = np.exp(-0.5 * scaled**2)
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("mk,mkd->md", weights, targets[index]).astype(np.float32)
