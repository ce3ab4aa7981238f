"""Images and texts in one 2-D map (UMAP, PCA or t-SNE), and the modality gap between them.

The estimators (scikit-learn's conventions: ``BaseEstimator``, parameters stored by ``__init__``,
validation in ``fit``, fitted attributes ending in ``_``, randomness through ``random_state``):

* :class:`JointLayout` ``(method="umap" | "pca" | "tsne")`` — the general one, used by the app;
* :class:`JointUMAP` (McInnes et al. 2018), :class:`JointPCA`, :class:`JointTSNE` (van der Maaten &
  Hinton 2008) — one method each, named for what they compute. ``JointUMAP(method="pca")`` still runs
  (older notebooks) but warns: it was never UMAP; use ``JointPCA()`` or ``JointLayout("pca")``.

Every estimator has ``transform`` for new points: PCA projects them; UMAP and t-SNE place each new
vector by its nearest fitted neighbours (see *Large n* below).

Bad input. Rows with NaN or infinite values are dropped and counted (``n_dropped_``; their rows of
``embedding_`` are NaN; ``message_`` says so); zero points (or only bad ones) raise a ``ValueError``;
1–3 points get no UMAP or t-SNE (their neighbourhoods are meaningless) but a PCA layout (1 point: the
origin) and a ``message_``; vectors that are all identical get a small spiral around the origin, so
each point can still be hovered, and a ``message_``.

Large n. UMAP's cost grows with n (approximate kNN, then SGD over every edge for every epoch). Above
``sample_size`` points, :class:`JointLayout` fits UMAP on a random sample (every text kept when texts
are at most half the sample: they are few and each matters) and *places* the other points: each one
goes to the weighted mean of the layout positions of its ``place_neighbors`` nearest sample points,
found exactly (cosine = dot product of unit vectors, a blocked matrix product), weighted with UMAP's
own membership form ``exp(−(d − ρ)/σ)`` (McInnes et al. 2018, §3.1; ρ = distance to the nearest
neighbour, σ = the mean of ``d − ρ`` over the neighbours instead of UMAP's binary search). What it
costs in neighbourhood quality is measured in ``benchmarks/bench_map.py`` (trustworthiness, k = 10, on
a 5,000-point subsample, against plain umap-learn on all points; figures in BENCHMARKS.md).

The fast first map. umap-learn compiles its numba kernels the first time they run in a process, and
most are compiled without an on-disk cache, so every fresh kernel pays tens of seconds; ``import umap``
alone compiles pynndescent. PCA (scikit-learn, no numba) is therefore the first picture the app shows;
UMAP follows from :func:`fit_in_background`, which runs the fit in a child process (numba compiles
while holding the GIL, so a thread would freeze the kernel). For UMAP itself this module (measured in
``benchmarks/bench_first_map.py``):

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
import json
import os
import subprocess
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator

from .embeddings import Embeddings

METHODS = ("umap", "pca", "tsne")
EXACT_KNN_MAX_POINTS = 20_000  # above this, exact kNN (n² dot products) costs more than pynndescent
TSNE_EXACT_MAX_POINTS = 500
MIN_NEIGHBOUR_POINTS = 4  # UMAP / t-SNE below this: a PCA layout and a message instead
DEFAULT_SAMPLE_SIZE = 10_000  # UMAP fits on at most this many points; the rest are placed
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


class JointLayout(BaseEstimator):
    """Lay image and text embeddings out together in 2-D with ``method`` ("umap", "pca" or "tsne").

    Parameters
    ----------
    method : "umap" (McInnes et al. 2018), "pca", or "tsne" (van der Maaten & Hinton 2008).
    n_components : dimensions of the layout (2 for a map).
    n_neighbors, min_dist : UMAP's neighbourhood size and packing.
    n_epochs : UMAP optimisation epochs; ``None`` → 200 (see the module docstring).
    init : UMAP initialisation, "pca" (default, fast) or "spectral" (umap-learn's default).
    perplexity : t-SNE's perplexity (capped below the number of points).
    close_gap : centre each modality before projecting, removing the modality gap (Liang et al. 2022).
    random_state : int or None; with an int the map is reproducible.
    fast_knn : compute exact neighbours with numpy and pass them to umap (up to 20,000 points).
    disk_cache : let numba keep umap-learn's compiled kernels on disk, so later processes start fast.
    sample_size : UMAP fits on at most this many points and places the rest (module docstring);
        ``None`` fits on every point.
    place_neighbors : neighbours used to place a point that UMAP / t-SNE did not fit (``transform``).
    verbose : print progress lines (``progress <fraction> <what>``; umap's epoch lines) to stdout.

    Fitted attributes: ``embedding_`` ``[n_rows, n_components]`` (rows as in the input, images first;
    NaN for dropped rows), ``valid_`` (bool per row), ``n_dropped_``, ``method_`` (what ran: "umap",
    "umap+placed", "pca", "tsne", "spiral", "origin"), ``message_`` (what the user should know, or ""),
    ``embeddings_`` (the input as :class:`Embeddings`), ``gap_`` (:class:`ModalityGap`, or None),
    ``n_images_``, ``n_texts_``, ``sample_rows_`` (rows UMAP was fitted on, when sampled),
    ``reducer_`` (the fitted umap / scikit-learn object, or None).
    """

    def __init__(self, method: str = "umap", *, n_components: int = 2, n_neighbors: int = 15,
                 min_dist: float = 0.1, n_epochs: int | None = None, init: str = "pca",
                 perplexity: float = 30.0, close_gap: bool = False, random_state=None,
                 fast_knn: bool = True, disk_cache: bool = True, sample_size: int | None = DEFAULT_SAMPLE_SIZE,
                 place_neighbors: int = 10, verbose: bool = False):
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
        self.sample_size = sample_size
        self.place_neighbors = place_neighbors
        self.verbose = verbose

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
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
            if self.sample_size is not None and (not isinstance(self.sample_size, (int, np.integer))
                                                 or self.sample_size < 2 * self.n_neighbors):
                raise ValueError(f"sample_size must be None or an integer ≥ 2 × n_neighbors "
                                 f"({2 * self.n_neighbors}), not {self.sample_size!r}")
        if self.method == "tsne" and self.perplexity <= 0:
            raise ValueError(f"perplexity must be positive, not {self.perplexity!r}")
        if not isinstance(self.place_neighbors, (int, np.integer)) or self.place_neighbors < 1:
            raise ValueError(f"place_neighbors must be a positive integer, not {self.place_neighbors!r}")

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None) -> JointLayout:
        """Fit the layout to an :class:`Embeddings` or a tuple ``(image_vectors, text_vectors)``."""
        self._validate()
        embeddings = as_embeddings(X)
        if len(embeddings) == 0:
            raise ValueError("there are no points to lay out: the embeddings are empty")
        self.embeddings_ = embeddings
        self.n_images_, self.n_texts_ = embeddings.n_images, embeddings.n_texts
        self.valid_ = finite_rows(embeddings.vectors)
        self.n_dropped_ = int((~self.valid_).sum())
        if not self.valid_.any():
            raise ValueError(f"all {len(embeddings)} vectors contain NaN or infinite values: nothing to lay out")
        notes = []
        if self.n_dropped_:
            notes.append(f"{self.n_dropped_} of {len(embeddings)} vectors contain NaN or infinite values "
                         f"and were left out")
        valid = _rows(embeddings, self.valid_)
        self.gap_ = modality_gap(valid) if valid.n_images and valid.n_texts else None
        self._gap_centres = _modality_centres(valid) if self.close_gap else None
        vectors = self._prepare(np.asarray(valid.vectors, dtype=np.float32), valid.modality)
        layout, self.method_, note = self._fit_layout(vectors, valid.modality)
        if note:
            notes.append(note)
        self.message_ = "; ".join(notes)
        self.embedding_ = np.full((len(embeddings), self.n_components), np.nan, dtype=np.float32)
        self.embedding_[self.valid_] = layout
        self._progress(1.0, "done")
        return self

    def fit_transform(self, X, y=None) -> np.ndarray:
        """Fit and return the layout ``[n_rows, n_components]`` (images first; NaN rows for dropped vectors)."""
        return self.fit(X).embedding_

    def _fit_layout(self, vectors: np.ndarray, modality: np.ndarray):
        """``(layout of the valid rows, method_, note)``; also sets ``reducer_``, ``sample_rows_`` and
        the vectors / layout that ``transform`` places new points against."""
        n = len(vectors)
        self.reducer_, self.sample_rows_ = None, None
        self._fit_vectors, self._fit_layout_coords = vectors, None
        if n == 1:
            self._fit_layout_coords = np.zeros((1, self.n_components), dtype=np.float32)
            return self._fit_layout_coords, "origin", "a single point: shown at the origin, there is nothing to lay out"
        if _all_identical(vectors):
            layout = spiral(n, self.n_components)
            self._fit_layout_coords = layout
            return layout, "spiral", (f"all {n} vectors are identical: the points are spread on a small spiral "
                                      f"so each can be hovered; their positions mean nothing")
        method, note = self.method, ""
        if method != "pca" and n < MIN_NEIGHBOUR_POINTS:
            note = (f"{n} points are too few for {method.upper() if method == 'umap' else 't-SNE'} "
                    f"(it needs at least {MIN_NEIGHBOUR_POINTS}): showing a PCA layout instead")
            method = "pca"
        if method == "pca":
            return self._fit_pca(vectors), "pca", note
        if method == "tsne":
            from sklearn.manifold import TSNE

            self._progress(0.1, "t-SNE")
            perplexity = min(self.perplexity, (n - 1) / 3)
            # Barnes-Hut's tree pays off only for larger n; below that the exact gradient is much faster.
            self.reducer_ = TSNE(n_components=self.n_components, perplexity=perplexity, metric="cosine",
                                 init="pca", random_state=self.random_state,
                                 method="exact" if n <= TSNE_EXACT_MAX_POINTS else "barnes_hut")
            layout = self.reducer_.fit_transform(vectors).astype(np.float32)
            self._fit_layout_coords = layout
            return layout, "tsne", note
        if self.sample_size is not None and n > self.sample_size:
            sample = _stratified_sample(modality, self.sample_size, self.random_state)
            self.sample_rows_ = np.flatnonzero(self.valid_)[sample]
            self.reducer_, sample_layout = self._fit_umap(vectors[sample])
            self._fit_vectors, self._fit_layout_coords = vectors[sample], sample_layout
            rest = np.setdiff1d(np.arange(n), sample)
            layout = np.empty((n, self.n_components), dtype=np.float32)
            layout[sample] = sample_layout
            self._progress(0.95, f"placing {len(rest)} points by their neighbours in the sample")
            layout[rest] = self._place(vectors[rest])
            return layout, "umap+placed", f"UMAP fitted on a sample of {len(sample)}; the other {len(rest)} points placed"
        self.reducer_, layout = self._fit_umap(vectors)
        self._fit_layout_coords = layout
        return layout, "umap", note

    def _fit_pca(self, vectors: np.ndarray) -> np.ndarray:
        n, d = vectors.shape
        layout = np.zeros((n, self.n_components), dtype=np.float32)
        if n > 1:
            from sklearn.decomposition import PCA

            components = min(self.n_components, n, d)
            self.reducer_ = PCA(n_components=components, random_state=self.random_state)
            layout[:, :components] = self.reducer_.fit_transform(vectors)
        self._fit_layout_coords = layout
        return layout

    def _fit_umap(self, vectors: np.ndarray):
        self._progress(0.02, "loading umap-learn (compiles its kernels once per machine)")
        if self.disk_cache:
            enable_umap_disk_cache()
        import umap

        n_neighbors = min(self.n_neighbors, len(vectors) - 1)
        options = dict(n_neighbors=n_neighbors, n_components=self.n_components, min_dist=self.min_dist,
                       metric="cosine", n_epochs=200 if self.n_epochs is None else self.n_epochs,
                       init=self.init, random_state=self.random_state, verbose=self.verbose,
                       tqdm_kwds={"disable": True})
        if self.fast_knn and len(vectors) <= EXACT_KNN_MAX_POINTS:
            self._progress(0.1, f"exact neighbours of {len(vectors)} points")
            indices, distances = exact_cosine_knn(vectors, n_neighbors)
            options["precomputed_knn"] = (indices, distances, None)
        self._progress(0.15, "optimising the UMAP layout")
        reducer = umap.UMAP(**options)
        with warnings.catch_warnings():
            # umap warns that random_state forces one thread, and that a kNN without a search index
            # cannot transform new points (``transform`` places them itself); both are expected here.
            warnings.filterwarnings("ignore", category=UserWarning, module="umap")
            warnings.filterwarnings("ignore", message=".*n_jobs.*")
            embedding = reducer.fit_transform(vectors)
        return reducer, np.asarray(embedding, dtype=np.float32)

    # ------------------------------------------------------------------ new points
    def transform(self, X) -> np.ndarray:
        """Place new points in the fitted layout: ``[n, n_components]`` (NaN rows for NaN/inf vectors).

        ``X``: an :class:`Embeddings`, ``(image_vectors, text_vectors)`` or an ``[n, d]`` array (rows are
        normalised; with ``close_gap=True`` an array is refused, as its modality is unknown). PCA
        projects; UMAP, t-SNE and the fallbacks place each point at the weighted mean of its
        ``place_neighbors`` nearest fitted points (module docstring).
        """
        if not hasattr(self, "embedding_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet: call fit(...) first")
        if isinstance(X, (Embeddings, tuple)):
            embeddings = as_embeddings(X)
            vectors, modality = np.asarray(embeddings.vectors, dtype=np.float32), embeddings.modality
        else:
            vectors = np.asarray(X, dtype=np.float32)
            if vectors.ndim != 2:
                raise ValueError(f"expected an [n, d] array of vectors, got shape {vectors.shape}")
            if self.close_gap:
                raise ValueError("this layout removed the modality gap, so it needs each new vector's modality: "
                                 "pass an Embeddings or (image_vectors, text_vectors), not a bare array")
            modality = None
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                vectors = vectors / norms
        if vectors.shape[1] != self._fit_vectors.shape[1]:
            raise ValueError(f"the layout was fitted on {self._fit_vectors.shape[1]}-d vectors, got {vectors.shape[1]}-d")
        out = np.full((len(vectors), self.n_components), np.nan, dtype=np.float32)
        ok = finite_rows(vectors)
        if ok.any():
            prepared = self._prepare(vectors[ok], None if modality is None else modality[ok])
            if self.method_ == "pca" and self.reducer_ is not None:
                placed = np.zeros((int(ok.sum()), self.n_components), dtype=np.float32)
                placed[:, : self.reducer_.n_components_] = self.reducer_.transform(prepared)
            else:
                placed = self._place(prepared)
            out[ok] = placed
        return out

    def _place(self, vectors: np.ndarray) -> np.ndarray:
        """Weighted mean of the layout positions of each vector's nearest fitted points."""
        k = min(self.place_neighbors, len(self._fit_vectors))
        indices, distances = cosine_knn(vectors, self._fit_vectors, k)
        return place_by_neighbours(self._fit_layout_coords, indices, distances)

    def _prepare(self, vectors: np.ndarray, modality) -> np.ndarray:
        """Vectors as the layout sees them: each modality moved by its fitted centre when ``close_gap``."""
        if not self.close_gap or self._gap_centres is None:
            return vectors
        vectors = np.array(vectors, dtype=np.float32)
        for name, centre in self._gap_centres.items():
            mask = modality == name
            vectors[mask] -= centre
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms == 0, 1, norms)

    def _progress(self, fraction: float, what: str) -> None:
        if self.verbose:
            print(f"progress {fraction:.3f} {what}", flush=True)

    # ------------------------------------------------------------------ pictures
    def plot(self, ax=None, color_by: str = "modality", **options):
        """Draw the fitted map; see :func:`clipviz.plotting.embeddings.plot_embedding_map`."""
        if not hasattr(self, "embedding_"):
            raise RuntimeError(f"this {type(self).__name__} is not fitted yet: call fit(...) or fit_transform(...) first")
        from .plotting.embeddings import plot_embedding_map

        valid = _rows(self.embeddings_, self.valid_)
        return plot_embedding_map(self.embedding_[self.valid_], valid, ax=ax, color_by=color_by, **options)

    def _repr_html_(self) -> str:
        if not hasattr(self, "embedding_"):
            return f"<div>{html.escape(repr(self))} (not fitted)</div>"
        gap = f"; modality gap {self.gap_.norm:.4f}" if self.gap_ is not None else ""
        note = f"<br><i>{html.escape(self.message_)}</i>" if self.message_ else ""
        return (f"<div><b>{html.escape(repr(self))}</b>: {self.n_images_} images + {self.n_texts_} texts "
                f"→ {self.embedding_.shape[1]}-D{gap}{note}</div>")


class JointUMAP(JointLayout):
    """UMAP (McInnes, Healy & Melville 2018, arXiv:1802.03426) of image and text embeddings together.

    The parameters of :class:`JointLayout` without ``method``. ``JointUMAP("pca")`` / ``method="tsne"``
    from older notebooks still run but warn (``FutureWarning``): use :class:`JointPCA`,
    :class:`JointTSNE` or ``JointLayout(method)``.
    """

    def __init__(self, method: str = "umap", *, n_components: int = 2, n_neighbors: int = 15,
                 min_dist: float = 0.1, n_epochs: int | None = None, init: str = "pca",
                 close_gap: bool = False, random_state=None, fast_knn: bool = True, disk_cache: bool = True,
                 sample_size: int | None = DEFAULT_SAMPLE_SIZE, place_neighbors: int = 10,
                 verbose: bool = False, perplexity: float = 30.0):
        super().__init__(method, n_components=n_components, n_neighbors=n_neighbors, min_dist=min_dist,
                         n_epochs=n_epochs, init=init, perplexity=perplexity, close_gap=close_gap,
                         random_state=random_state, fast_knn=fast_knn, disk_cache=disk_cache,
                         sample_size=sample_size, place_neighbors=place_neighbors, verbose=verbose)

    def fit(self, X, y=None) -> JointUMAP:
        if self.method != "umap":
            alternative = {"pca": "JointPCA()", "tsne": "JointTSNE()"}.get(self.method, "JointLayout(method)")
            warnings.warn(f"JointUMAP(method={self.method!r}) is not UMAP; use {alternative} or "
                          f"JointLayout({self.method!r}) — JointUMAP's method argument will be removed",
                          FutureWarning, stacklevel=2)
        return super().fit(X, y)


class JointPCA(JointLayout):
    """PCA of image and text embeddings together: linear, instant, no numba (the app's first picture)."""

    def __init__(self, *, n_components: int = 2, close_gap: bool = False, random_state=None):
        super().__init__("pca", n_components=n_components, close_gap=close_gap, random_state=random_state)


class JointTSNE(JointLayout):
    """t-SNE (van der Maaten & Hinton 2008, JMLR) of image and text embeddings together, cosine metric."""

    def __init__(self, *, n_components: int = 2, perplexity: float = 30.0, close_gap: bool = False,
                 random_state=None, place_neighbors: int = 10):
        super().__init__("tsne", n_components=n_components, perplexity=perplexity, close_gap=close_gap,
                         random_state=random_state, place_neighbors=place_neighbors)


# ------------------------------------------------------------------------------------- in the background
class BackgroundLayout:
    """A :class:`JointLayout` fitted in a child Python process, so the kernel stays responsive.

    Numba compiles umap-learn's kernels while holding the GIL, so a thread would freeze the kernel for
    tens of seconds; a process does not. The vectors go to the child through a temporary ``.npy``; the
    child prints ``progress <fraction> <what>`` lines (and umap's epoch lines), read here by a thread
    that calls ``on_progress(fraction, what)``; when it ends, ``on_done(result)`` gets a dict with
    ``embedding``, ``method``, ``message`` and ``seconds`` — or ``on_error(message)``. ``cancel()``
    terminates the child; a cancelled job calls nothing.
    """

    def __init__(self, layout: JointLayout, embeddings: Embeddings, *, on_progress=None, on_done=None,
                 on_error=None):
        self.layout = layout
        self.on_progress, self.on_done, self.on_error = on_progress, on_done, on_error
        self.cancelled = False
        self.result: dict | None = None
        self.error: str | None = None
        self.progress = (0.0, "starting")
        self._folder = tempfile.TemporaryDirectory(prefix="clipviz-layout-")
        folder = Path(self._folder.name)
        np.save(folder / "vectors.npy", np.asarray(embeddings.vectors, dtype=np.float32))
        np.save(folder / "is_image.npy", np.asarray(embeddings.is_image))
        params = layout.get_params()
        (folder / "params.json").write_text(json.dumps({"class": type(layout).__name__, "params": params}))
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen([sys.executable, "-m", "clipviz.projection", str(folder)],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self._thread = threading.Thread(target=self._watch, name="clipviz-layout", daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def cancel(self) -> None:
        """Stop the child process; nothing will be called back."""
        self.cancelled = True
        if self.process.poll() is None:
            self.process.terminate()

    def wait(self, timeout: float | None = None) -> dict | None:
        """Block until the job ends (tests, scripts); returns the result dict (None if cancelled or failed)."""
        self._thread.join(timeout)
        return self.result

    def _watch(self) -> None:
        tail = []
        epochs = None
        for line in self.process.stdout:
            line = line.strip()
            tail = (tail + [line])[-20:]
            fraction, what = _parse_progress(line, epochs)
            if fraction is None:
                continue
            self.progress = (fraction, what)
            if self.on_progress is not None and not self.cancelled:
                self.on_progress(fraction, what)
        code = self.process.wait()
        folder = Path(self._folder.name)
        try:
            if self.cancelled:
                return
            if code != 0 or not (folder / "result.json").exists():
                self.error = "the layout process failed:\n" + "\n".join(tail[-8:])
                if self.on_error is not None:
                    self.on_error(self.error)
                return
            result = json.loads((folder / "result.json").read_text())
            result["embedding"] = np.load(folder / "embedding.npy")
            self.result = result
            if self.on_done is not None:
                self.on_done(result)
        finally:
            self._folder.cleanup()


def fit_in_background(layout: JointLayout, embeddings: Embeddings, **callbacks) -> BackgroundLayout:
    """Start fitting ``layout`` on ``embeddings`` in a child process; see :class:`BackgroundLayout`."""
    return BackgroundLayout(layout, embeddings, **callbacks)


def _parse_progress(line: str, epochs) -> tuple[float | None, str]:
    if line.startswith("progress "):
        _, fraction, what = (line.split(" ", 2) + [""])[:3]
        try:
            return float(fraction), what
        except ValueError:
            return None, ""
    if line.startswith("completed"):  # umap-learn's verbose epoch line: "completed  20  /  200 epochs"
        numbers = [int(word) for word in line.replace("/", " ").split() if word.isdigit()]
        if len(numbers) == 2 and numbers[1]:
            done, total = numbers
            return 0.15 + 0.8 * done / total, f"optimising the UMAP layout: epoch {done} / {total}"
    return None, ""


def _run_child(folder: str) -> None:
    """The child side of :class:`BackgroundLayout`."""
    import time

    started = time.perf_counter()
    folder = Path(folder)
    spec = json.loads((folder / "params.json").read_text())
    cls = {c.__name__: c for c in (JointLayout, JointUMAP, JointPCA, JointTSNE)}[spec["class"]]
    vectors = np.load(folder / "vectors.npy")
    is_image = np.load(folder / "is_image.npy")
    layout = cls(**{k: v for k, v in spec["params"].items() if k in cls._get_param_names()})
    layout.verbose = True  # JointPCA / JointTSNE take no verbose argument but print the same way
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        layout.fit((vectors[is_image], vectors[~is_image]))
    np.save(folder / "embedding.npy", layout.embedding_)
    (folder / "result.json").write_text(json.dumps({
        "method": layout.method_, "message": layout.message_, "seconds": time.perf_counter() - started}))


# ------------------------------------------------------------------------------------- helpers
def cosine_knn(queries: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest ``base`` rows of each ``queries`` row under cosine distance (unit vectors).

    ``(indices [n, k] int64, distances [n, k] float32)``, nearest first; a blocked matrix product, so
    memory stays at ``_KNN_BLOCK_ROWS × len(base)`` floats whatever ``len(queries)``.
    """
    queries = np.asarray(queries, dtype=np.float32)
    base = np.asarray(base, dtype=np.float32)
    n, k = len(queries), min(k, len(base))
    indices = np.empty((n, k), dtype=np.int64)
    distances = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, _KNN_BLOCK_ROWS):
        stop = min(start + _KNN_BLOCK_ROWS, n)
        similarity = queries[start:stop] @ base.T  # [block, len(base)]
        top = (np.argpartition(-similarity, k - 1, axis=1)[:, :k] if k < len(base)
               else np.tile(np.arange(len(base)), (stop - start, 1)))
        top_similarity = np.take_along_axis(similarity, top, axis=1)
        order = np.argsort(-top_similarity, axis=1, kind="stable")
        indices[start:stop] = np.take_along_axis(top, order, axis=1)
        distances[start:stop] = np.clip(1.0 - np.take_along_axis(top_similarity, order, axis=1), 0.0, 2.0)
    return indices, distances


def place_by_neighbours(layout: np.ndarray, indices: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Each point at the weighted mean of its neighbours' ``layout`` positions, with UMAP's membership
    weights ``exp(−(d − ρ)/σ)`` (ρ: the nearest distance; σ: the mean of ``d − ρ``; McInnes et al. 2018)."""
    rho = distances[:, :1]
    excess = distances - rho
    sigma = excess.mean(axis=1, keepdims=True)
    weights = np.exp(-excess / np.where(sigma > 1e-12, sigma, 1.0))
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("nk,nkc->nc", weights, layout[indices]).astype(np.float32)


def spiral(n: int, n_components: int = 2) -> np.ndarray:
    """``n`` points on a small golden-angle spiral around the origin (identical vectors stay hoverable)."""
    layout = np.zeros((n, n_components), dtype=np.float32)
    if n > 1 and n_components >= 2:
        turns = np.arange(n) * np.pi * (3 - np.sqrt(5))
        radius = 0.1 * np.sqrt(np.arange(n) / n)
        layout[:, 0], layout[:, 1] = radius * np.cos(turns), radius * np.sin(turns)
    elif n > 1:
        layout[:, 0] = np.linspace(-0.1, 0.1, n)
    return layout


def finite_rows(vectors) -> np.ndarray:
    """Bool per row: every value finite (NaN and ±inf rows cannot be laid out)."""
    vectors = np.asarray(vectors)
    if vectors.ndim != 2:
        raise ValueError(f"expected an [n, d] array of vectors, got shape {vectors.shape}")
    return np.isfinite(vectors).all(axis=1)


def _all_identical(vectors: np.ndarray) -> bool:
    return len(vectors) > 0 and float(np.abs(vectors - vectors[:1]).max()) < 1e-6


def _stratified_sample(modality: np.ndarray, size: int, random_state) -> np.ndarray:
    """Sorted row positions: every text when texts are at most half of ``size``, images fill the rest."""
    rng = np.random.default_rng(random_state)
    texts, images = np.flatnonzero(modality == "text"), np.flatnonzero(modality != "text")
    if len(texts) <= size // 2:
        chosen = np.concatenate([texts, rng.choice(images, size - len(texts), replace=False)])
    else:
        chosen = rng.choice(len(modality), size, replace=False)
    return np.sort(chosen)


def _rows(embeddings: Embeddings, mask: np.ndarray) -> Embeddings:
    """The rows of ``embeddings`` where ``mask`` is true (``embeddings`` itself when all are)."""
    if mask.all():
        return embeddings
    from dataclasses import replace

    rows = np.flatnonzero(mask)
    image_rows = np.flatnonzero(embeddings.is_image)
    thumbs = embeddings.thumbnails
    if len(thumbs):
        thumbs = thumbs[np.flatnonzero(mask[image_rows])]
    keep = set(rows.tolist())
    pairs = embeddings.pairs
    if pairs is not None:
        new = {int(old): i for i, old in enumerate(rows)}
        pairs = np.array([(new[a], new[b]) for a, b in pairs if a in keep and b in keep], np.int64).reshape(-1, 2)
    return replace(embeddings, vectors=np.asarray(embeddings.vectors)[rows], modality=embeddings.modality[rows],
                   labels=embeddings.labels[rows], sources=[embeddings.sources[i] for i in rows],
                   index=embeddings.index[rows], thumbnails=thumbs, pairs=pairs,
                   inputs=[embeddings.inputs[i] for i in rows] if embeddings.inputs else [])


def _modality_centres(embeddings: Embeddings) -> dict:
    vectors = np.asarray(embeddings.vectors, dtype=np.float32)
    return {name: vectors[embeddings.modality == name].mean(axis=0)
            for name in ("image", "text") if (embeddings.modality == name).any()}


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
        with np.errstate(invalid="ignore"):  # NaN rows stay NaN; JointLayout drops and counts them
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


if __name__ == "__main__":  # the child process of BackgroundLayout
    _run_child(sys.argv[1])
