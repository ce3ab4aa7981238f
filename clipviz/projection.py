"""Images and texts in one 2-D map (UMAP, PCA or t-SNE), and the modality gap between them.

``JointUMAP`` follows scikit-learn's estimator conventions (parameters stored by ``__init__``,
validation in ``fit``, fitted attributes ending in ``_``, randomness through ``random_state``).

The fast first map. umap-learn compiles its numba kernels the first time they run in a process, and
most are compiled without an on-disk cache, so every fresh kernel pays tens of seconds. For UMAP this
module therefore (measured in ``benchmarks/bench_first_map.py``):

* computes the exact k nearest neighbours itself (unit vectors: cosine similarity is a dot product,
  blocked so memory stays bounded) and hands them to umap as ``precomputed_knn``, which skips
  pynndescent's approximate search (and its compilation) up to ``EXACT_KNN_MAX_POINTS`` points;
* switches on numba's on-disk cache for umap-learn's kernels, so only the first process ever pays
  for compiling them (numba keeps the cache beside the package, or in the user's cache folder when
  that is read-only; ``NUMBA_CACHE_DIR`` moves it);
* uses 200 optimisation epochs and a PCA initialisation (the same neighbourhood quality here at a
  fraction of the time of 500 epochs and a spectral start).
"""

from __future__ import annotations

import html
import warnings
from dataclasses import dataclass

import numpy as np

from .embeddings import Embeddings

METHODS = ("umap", "pca", "tsne")
EXACT_KNN_MAX_POINTS = 20_000  # above this, exact kNN (n² dot products) costs more than pynndescent
TSNE_EXACT_MAX_POINTS = 500
_KNN_BLOCK_ROWS = 2048  # rows of the similarity matrix held at once: 2048 × n float32


@dataclass(frozen=True)
class ModalityGap:
    """The modality gap of Liang et al. 2022 ("Mind the Gap: Understanding the Modality Gap in
    Multi-modal Contrastive Representation Learning", NeurIPS 2022): the difference between the centre
    of the image embeddings and the centre of the text embeddings.

    ``vector`` = mean(images) − mean(texts) (``[d]``); ``norm`` is its length (the paper's gap
    distance); ``centroid_cosine`` is the cosine similarity between the two centres.
    """

    vector: np.ndarray
    norm: float
    image_centroid: np.ndarray
    text_centroid: np.ndarray
    centroid_cosine: float
    n_images: int
    n_texts: int

    def __repr__(self) -> str:
        return (f"ModalityGap(norm={self.norm:.4f}, centroid_cosine={self.centroid_cosine:.4f}, "
                f"n_images={self.n_images}, n_texts={self.n_texts})")

    def _repr_html_(self) -> str:
        return (f"<div><b>Modality gap</b> (Liang et al. 2022): ‖mean(images) − mean(texts)‖ = "
                f"<b>{self.norm:.4f}</b>; cosine between the centres {self.centroid_cosine:.4f} "
                f"({self.n_images} images, {self.n_texts} texts)</div>")


def modality_gap(embeddings) -> ModalityGap:
    """The modality gap (Liang et al. 2022) of an :class:`Embeddings` or ``(image_vectors, text_vectors)``."""
    images, texts = _split(embeddings)
    if len(images) == 0 or len(texts) == 0:
        raise ValueError("the modality gap needs both image and text embeddings")
    image_centre = images.mean(axis=0, dtype=np.float64)
    text_centre = texts.mean(axis=0, dtype=np.float64)
    gap = image_centre - text_centre
    cosine = float(image_centre @ text_centre / (np.linalg.norm(image_centre) * np.linalg.norm(text_centre) or 1.0))
    return ModalityGap(gap, float(np.linalg.norm(gap)), image_centre, text_centre, cosine, len(images), len(texts))


def close_modality_gap(embeddings: Embeddings) -> Embeddings:
    """A copy with each modality centred on the origin and rows re-normalised: the gap removed
    (the centring of Liang et al. 2022, §4.2, taken all the way)."""
    vectors = np.array(embeddings.vectors, dtype=np.float32)
    for mask in (embeddings.is_image, embeddings.is_text):
        if mask.any():
            vectors[mask] -= vectors[mask].mean(axis=0)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors /= np.where(norms == 0, 1, norms)
    return _replace_vectors(embeddings, vectors)


class JointUMAP:
    """Project image and text embeddings together into 2-D.

    Parameters
    ----------
    method : "umap" (McInnes et al. 2018), "pca", or "tsne" (van der Maaten & Hinton 2008).
    n_neighbors, min_dist : UMAP's neighbourhood size and packing.
    n_epochs : UMAP optimisation epochs; ``None`` → 200 (see the module docstring).
    init : UMAP initialisation, "pca" (default, fast) or "spectral" (umap-learn's default).
    perplexity : t-SNE's perplexity (capped below the number of points).
    close_gap : centre each modality before projecting, removing the modality gap (Liang et al. 2022).
    random_state : int or None; with an int the map is reproducible.
    fast_knn : compute exact neighbours with numpy and pass them to umap (up to 20,000 points).
    disk_cache : let numba keep umap-learn's compiled kernels on disk, so later processes start fast.

    Fitted attributes: ``embedding_`` ``[n_images + n_texts, 2]`` (images first), ``embeddings_`` (the
    input as :class:`Embeddings`), ``gap_`` (:class:`ModalityGap` of the input), ``n_images_``,
    ``n_texts_``, ``reducer_`` (the fitted umap / scikit-learn object).
    """

    def __init__(self, method: str = "umap", *, n_components: int = 2, n_neighbors: int = 15,
                 min_dist: float = 0.1, n_epochs: int | None = None, init: str = "pca",
                 perplexity: float = 30.0, close_gap: bool = False, random_state=None,
                 fast_knn: bool = True, disk_cache: bool = True):
        self.method = method
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.n_epochs = n_epochs
        self.init = init
        self.perplexity = perplexity
        self.close_gap = close_gap
        self.random_state = random_state
        self.fast_knn = fast_knn
        self.disk_cache = disk_cache

    # scikit-learn's get_params / set_params, without depending on BaseEstimator
    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in (
            "method", "n_components", "n_neighbors", "min_dist", "n_epochs", "init", "perplexity",
            "close_gap", "random_state", "fast_knn", "disk_cache")}

    def set_params(self, **params) -> JointUMAP:
        valid = self.get_params()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"JointUMAP has no parameter {name!r}; valid: {sorted(valid)}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = JointUMAP().get_params()
        changed = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items() if v != defaults[k])
        return f"JointUMAP({changed})"

    def _validate(self, n_points: int) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {self.method!r}")
        if not isinstance(self.n_components, (int, np.integer)) or self.n_components < 1:
            raise ValueError(f"n_components must be a positive integer, not {self.n_components!r}")
        if self.method == "umap":
            if not isinstance(self.n_neighbors, (int, np.integer)) or self.n_neighbors < 2:
                raise ValueError(f"n_neighbors must be an integer ≥ 2, not {self.n_neighbors!r}")
            if not 0.0 <= self.min_dist:
                raise ValueError(f"min_dist must be ≥ 0, not {self.min_dist!r}")
            if self.init not in ("pca", "spectral", "random"):
                raise ValueError(f"init must be 'pca', 'spectral' or 'random', not {self.init!r}")
        if self.method == "tsne" and self.perplexity <= 0:
            raise ValueError(f"perplexity must be positive, not {self.perplexity!r}")
        minimum = 3 if self.method != "pca" else 2
        if n_points < minimum:
            raise ValueError(f"{self.method} needs at least {minimum} points, got {n_points}")

    def fit(self, X, y=None) -> JointUMAP:
        """Fit the map to an :class:`Embeddings` or a tuple ``(image_vectors, text_vectors)``."""
        embeddings = as_embeddings(X)
        self._validate(len(embeddings))
        self.embeddings_ = embeddings
        self.n_images_, self.n_texts_ = embeddings.n_images, embeddings.n_texts
        self.gap_ = modality_gap(embeddings) if self.n_images_ and self.n_texts_ else None
        data = close_modality_gap(embeddings) if self.close_gap else embeddings
        vectors = np.ascontiguousarray(data.vectors, dtype=np.float32)
        if self.method == "umap":
            self.reducer_, self.embedding_ = self._fit_umap(vectors)
        elif self.method == "pca":
            from sklearn.decomposition import PCA

            self.reducer_ = PCA(n_components=self.n_components, random_state=self.random_state)
            self.embedding_ = self.reducer_.fit_transform(vectors).astype(np.float32)
        else:
            from sklearn.manifold import TSNE

            perplexity = min(self.perplexity, (len(vectors) - 1) / 3)
            # Barnes-Hut's tree pays off only for larger n; below that the exact gradient is much faster.
            self.reducer_ = TSNE(n_components=self.n_components, perplexity=perplexity, metric="cosine",
                                 init="pca", random_state=self.random_state,
                                 method="exact" if len(vectors) <= TSNE_EXACT_MAX_POINTS else "barnes_hut")
            self.embedding_ = self.reducer_.fit_transform(vectors).astype(np.float32)
        return self

    def fit_transform(self, X, y=None) -> np.ndarray:
        """Fit and return the map ``[n_images + n_texts, n_components]`` (images first)."""
        return self.fit(X).embedding_

    def _fit_umap(self, vectors: np.ndarray):
        if self.disk_cache:
            enable_umap_disk_cache()
        import umap

        n_neighbors = min(self.n_neighbors, len(vectors) - 1)
        options = dict(n_neighbors=n_neighbors, n_components=self.n_components, min_dist=self.min_dist,
                       metric="cosine", n_epochs=200 if self.n_epochs is None else self.n_epochs,
                       init=self.init, random_state=self.random_state)
        if self.fast_knn and len(vectors) <= EXACT_KNN_MAX_POINTS:
            indices, distances = exact_cosine_knn(vectors, n_neighbors)
            options["precomputed_knn"] = (indices, distances, None)
        reducer = umap.UMAP(**options)
        with warnings.catch_warnings():
            # umap warns that random_state forces one thread, and that a kNN without a search index
            # cannot transform new points; both are expected here.
            warnings.filterwarnings("ignore", category=UserWarning, module="umap")
            warnings.filterwarnings("ignore", message=".*n_jobs.*")
            embedding = reducer.fit_transform(vectors)
        return reducer, np.asarray(embedding, dtype=np.float32)

    def plot(self, ax=None, color_by: str = "modality", **options):
        """Draw the fitted map; see :func:`clipviz.plotting.embeddings.plot_embedding_map`."""
        if not hasattr(self, "embedding_"):
            raise RuntimeError("this JointUMAP is not fitted yet: call fit(...) or fit_transform(...) first")
        from .plotting.embeddings import plot_embedding_map

        return plot_embedding_map(self.embedding_, self.embeddings_, ax=ax, color_by=color_by, **options)

    def _repr_html_(self) -> str:
        if not hasattr(self, "embedding_"):
            return f"<div>{html.escape(repr(self))} (not fitted)</div>"
        gap = f"; modality gap {self.gap_.norm:.4f}" if self.gap_ is not None else ""
        return (f"<div><b>{html.escape(repr(self))}</b>: {self.n_images_} images + {self.n_texts_} texts "
                f"→ {self.embedding_.shape[1]}-D{gap}</div>")


# ------------------------------------------------------------------------------------- helpers
def exact_cosine_knn(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest neighbours of unit vectors under cosine distance (``1 − dot``).

    Returns ``(indices [n, k] int64, distances [n, k] float32)``, nearest first, each point its own
    first neighbour (umap-learn's convention). Computed in blocks of rows to bound memory.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    n = len(vectors)
    k = min(k, n)
    indices = np.empty((n, k), dtype=np.int64)
    distances = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, _KNN_BLOCK_ROWS):
        rows = np.arange(start, min(start + _KNN_BLOCK_ROWS, n))
        similarity = vectors[rows] @ vectors.T  # [block, n]
        similarity[np.arange(len(rows)), rows] = np.inf  # self first, whatever rounding says
        if k < n:
            top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        else:
            top = np.tile(np.arange(n), (len(rows), 1))
        top_similarity = np.take_along_axis(similarity, top, axis=1)
        order = np.argsort(-top_similarity, axis=1, kind="stable")
        indices[rows] = np.take_along_axis(top, order, axis=1)
        nearest = np.take_along_axis(top_similarity, order, axis=1)
        distances[rows] = np.clip(1.0 - np.where(np.isinf(nearest), 1.0, nearest), 0.0, 2.0)
    return indices, distances


_DISK_CACHE_ENABLED = False


def enable_umap_disk_cache() -> int:
    """Give umap-learn's numba kernels numba's on-disk cache (most are compiled without one).

    The first process to run them still compiles; every later process loads the machine code from
    disk. Numba keys the cache by source file and signature, so an upgrade of umap-learn recompiles.
    Returns how many kernels were switched (0 on later calls).
    """
    global _DISK_CACHE_ENABLED
    if _DISK_CACHE_ENABLED:
        return 0
    _DISK_CACHE_ENABLED = True
    try:
        import umap.layouts
        import umap.spectral
        import umap.umap_
        import umap.utils
        from numba.core.caching import NullCache
        from numba.core.registry import CPUDispatcher
    except ImportError:  # a numba layout we do not know: stay correct, just slower
        return 0
    switched = 0
    for module in (umap.umap_, umap.layouts, umap.utils, umap.spectral):
        for value in list(vars(module).values()):
            if isinstance(value, CPUDispatcher) and isinstance(value._cache, NullCache):
                try:
                    value.enable_caching()
                    switched += 1
                except Exception:  # e.g. a kernel numba cannot cache; it is compiled as before
                    continue
    return switched


def as_embeddings(X) -> Embeddings:
    """An :class:`Embeddings` from itself or from ``(image_vectors, text_vectors)``."""
    if isinstance(X, Embeddings):
        return X
    if isinstance(X, tuple) and len(X) == 2:
        images, texts = X
        return Embeddings.from_arrays(_or_none(images), _or_none(texts))
    raise TypeError(
        f"expected an Embeddings (from clipviz.embed) or a tuple (image_vectors, text_vectors), got {type(X).__name__}"
    )


def _or_none(vectors):
    if vectors is None:
        return None
    vectors = np.asarray(vectors)
    return vectors if vectors.size else None


def _split(embeddings) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(embeddings, Embeddings):
        return np.asarray(embeddings.image_vectors, np.float64), np.asarray(embeddings.text_vectors, np.float64)
    if isinstance(embeddings, tuple) and len(embeddings) == 2:
        images, texts = (np.asarray(v, dtype=np.float64) for v in embeddings)
        if images.ndim != 2 or texts.ndim != 2 or images.shape[1] != texts.shape[1]:
            raise ValueError(f"expected two [n, d] arrays of the same width, got {images.shape} and {texts.shape}")
        # The gap is defined between unit embeddings (the model's output); normalise raw vectors.
        return (images / np.linalg.norm(images, axis=1, keepdims=True),
                texts / np.linalg.norm(texts, axis=1, keepdims=True))
    raise TypeError(f"expected an Embeddings or (image_vectors, text_vectors), got {type(embeddings).__name__}")


def _replace_vectors(embeddings: Embeddings, vectors: np.ndarray) -> Embeddings:
    from dataclasses import replace

    return replace(embeddings, vectors=vectors)
