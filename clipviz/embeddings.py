"""Batched, cached, resumable embedding of images and texts into a model's joint space.

``embed(model, images=..., texts=...)`` returns an :class:`Embeddings`: unit-norm vectors with, per row,
the modality (``"image"`` / ``"text"``), a label, where it came from, and a small thumbnail for images.

Images (a list of paths, PIL images or arrays, a folder, or one file) are decoded and preprocessed
lazily, one batch at a time, in a background thread, so decoding overlaps the model's forward pass and
only a few batches are ever in memory.

With ``cache=<directory>`` every finished batch is written to disk as ``.npy`` shards
(:mod:`clipviz.store`). The key of a batch is a SHA-256 over: the model's identity (its name and a
fingerprint of config and weights), the image processor's (or tokenizer's) settings, the thumbnail
size, the cache format, and each input of the batch, identified as follows:

- a file path, with ``cache_key="stat"`` (the default): absolute path + size + modification time (ns).
  Cheap, but a file replaced by same-size content with its mtime restored (``cp -p``, tar, zip) looks
  unchanged; with ``cache_key="content"``: absolute path + a SHA-256 of the file's bytes (each file
  is read once more per run, about 1 GB/s), which notices every change;
- an in-memory image (PIL or array): a SHA-256 of its pixels, mode/dtype and size;
- a text: the text itself.

Stored shards carry SHA-256 checksums that are always verified on read, so a damaged or replaced
shard file is recomputed, never served. Each file is written atomically (temporary name, ``fsync``,
``os.replace``) and a batch counts as finished only once its small JSON record (written last)
exists, so an interrupted run (an exception, a kernel restart) keeps every finished batch, never a
half-written one, and the next call resumes where it stopped. A rerun over the same inputs is
instant: the assembled result is memory-mapped.

``engine="ray"`` runs the same embedding on Ray Data and writes Parquet shards to ``output=``
(:mod:`clipviz.scale`); :meth:`Embeddings.open` reads those, clip-retrieval folders and other
Parquet collections back, and :meth:`Embeddings.search` finds the nearest rows.
"""

from __future__ import annotations

import hashlib
import html
import os
import warnings
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import images as _images
from .store import BatchResult, ShardStore

MODALITIES = ("image", "text")
CACHE_FORMAT = 2  # bump when the shard layout changes, so old shards are never misread
CACHE_KEYS = ("stat", "content")
THUMBNAIL_SIZE = 32  # pixels; small enough for 100k+ images on disk, big enough to recognise
_PROGRESS_MIN_BATCHES = 4  # a progress bar for anything longer than a few batches


@dataclass
class Embeddings:
    """Image and text embeddings in one table: images first, then texts.

    ``vectors``: ``[n, d]`` float32, unit norm (a memory-mapped array when it came from a cache; float16
    when a collection opened from disk stores float16).
    ``modality``: ``"image"`` or ``"text"`` per row. ``labels``: one label per row (``None`` where unknown).
    ``sources``: a path, ``"<image i>"`` for an in-memory image, or the text, per row.
    ``index``: the row's position in the ``images`` / ``texts`` the caller passed.
    ``thumbnails``: ``[n_images, t, t, 3]`` uint8 (empty when ``thumbnail_size=0``), aligned with image rows.
    ``pairs``: ``[k, 2]`` (image row, text row) pairs that belong together, or ``None``.
    ``skipped``: ``(source, reason)`` for inputs that could not be read.
    ``inputs``: what the caller passed for each row (a path, the PIL image or array itself, the text):
    hand ``inputs[row]`` to other views (zero-shot, heatmaps).
    """

    vectors: np.ndarray
    modality: np.ndarray
    labels: np.ndarray
    sources: list
    index: np.ndarray
    thumbnails: np.ndarray
    pairs: np.ndarray | None = None
    skipped: list = field(default_factory=list)
    model_name: str = ""
    inputs: list = field(default_factory=list)
    fingerprint: str = ""  # the weights fingerprint of the model that made the vectors, when known
    metadata: dict = field(default_factory=dict)  # what a collection on disk says about itself

    # ------------------------------------------------------------------ collections and search
    @classmethod
    def open(cls, path, *, cache=None, embedding_column: str | None = None) -> Embeddings:
        """Open a collection on disk, memory-mapped (see :mod:`clipviz.readers` for the layouts).

        ``path``: a folder written by ``clipviz.embed(..., engine="ray", output=...)``, a ``cache=``
        folder of ``clipviz.embed`` (or one of its ``*.run.json`` records), a clip-retrieval folder
        (``img_emb/``, ``text_emb/``, ``metadata/``), or a Parquet file / folder of Parquet files
        with an embedding column (``embedding_column=`` names it when it is not found by itself).
        Parquet vectors are streamed once into a ``.npy`` under ``cache`` (default: the collection's
        own folder when writable, else ``~/.cache/clipviz/collections``) and memory-mapped from there.
        """
        from .readers import open_collection

        return open_collection(path, cache=cache, embedding_column=embedding_column)

    def search(self, query, k: int = 10, *, model=None, among: str | None = None, block_rows: int = 65536):
        """The ``k`` rows nearest to ``query`` by cosine similarity, exact (see :func:`clipviz.search.search`).

        ``query``: a text (needs ``model``; finds images), an image or image path (needs ``model``;
        finds texts), or a vector ``[d]``. ``among``: ``"image"``, ``"text"`` or ``"all"``.
        """
        from .search import search

        return search(self, query, k=k, model=model, among=among, block_rows=block_rows)

    def check_model(self, model) -> None:
        """Refuse to combine these vectors with ``model`` when they say they come from another model."""
        from .search import check_model

        check_model(self, model)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_arrays(cls, image_vectors=None, text_vectors=None, image_labels=None, text_labels=None,
                    texts=None, pairs=None) -> Embeddings:
        """Wrap vectors computed elsewhere (rows are normalised to unit length)."""
        parts, modality, labels, sources, index = [], [], [], [], []
        for name, vectors, names in (("image", image_vectors, image_labels), ("text", text_vectors, text_labels)):
            if vectors is None:
                continue
            vectors = np.asarray(vectors, dtype=np.float32)
            if vectors.ndim != 2:
                raise ValueError(f"{name} vectors must be a 2-D array [n, d], got shape {vectors.shape}")
            n = len(vectors)
            if names is not None and len(names) != n:
                raise ValueError(f"{len(names)} {name} labels were given for {n} {name} vectors")
            parts.append(vectors)
            modality += [name] * n
            labels += list(names) if names is not None else [None] * n
            if name == "text" and texts is not None:
                sources += list(texts)
            else:
                sources += [f"<{name} {i}>" for i in range(n)]
            index.append(np.arange(n))
        if not parts:
            raise ValueError("give image_vectors and/or text_vectors")
        if len({p.shape[1] for p in parts}) > 1:
            raise ValueError(f"image and text vectors differ in width: {[p.shape[1] for p in parts]}")
        vectors = _unit(np.concatenate(parts) if len(parts) > 1 else parts[0])  # _unit returns a new array
        return cls(vectors, np.array(modality), _object_array(labels), sources, np.concatenate(index),
                   np.zeros((0, 0, 0, 3), np.uint8), None if pairs is None else np.asarray(pairs, dtype=np.int64),
                   inputs=list(sources))

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def is_image(self) -> np.ndarray:
        return self.modality == "image"

    @property
    def is_text(self) -> np.ndarray:
        return self.modality == "text"

    @property
    def image_vectors(self) -> np.ndarray:
        return self.vectors[self.is_image]

    @property
    def text_vectors(self) -> np.ndarray:
        return self.vectors[self.is_text]

    @property
    def n_images(self) -> int:
        return int(self.is_image.sum())

    @property
    def n_texts(self) -> int:
        return int(self.is_text.sum())

    def thumbnail(self, row: int) -> np.ndarray | None:
        """The ``[t, t, 3]`` thumbnail of image row ``row`` (``None`` for texts or without thumbnails)."""
        if self.modality[row] != "image" or len(self.thumbnails) == 0:
            return None
        return np.asarray(self.thumbnails[int(self.is_image[:row].sum())])

    def matched_pairs(self) -> np.ndarray:
        """``[k, 2]`` (image row, text row): the explicit ``pairs``, else image and text rows sharing a label."""
        if self.pairs is not None:
            return self.pairs
        text_rows: dict = {}
        for row in np.flatnonzero(self.is_text):
            if self.labels[row] is not None:
                text_rows.setdefault(self.labels[row], []).append(row)
        found = [(i, t) for i in np.flatnonzero(self.is_image) for t in text_rows.get(self.labels[i], ())]
        return np.array(found, dtype=np.int64).reshape(-1, 2)

    def __repr__(self) -> str:
        return (f"Embeddings({self.n_images} images + {self.n_texts} texts, dim={self.dim}, "
                f"model={self.model_name!r}, skipped={len(self.skipped)})")

    def _repr_html_(self) -> str:
        rows = [("images", self.n_images), ("texts", self.n_texts), ("dimension", self.dim),
                ("model", html.escape(self.model_name or "?")), ("skipped inputs", len(self.skipped))]
        body = "".join(f"<tr><th style='text-align:left'>{k}</th><td>{v}</td></tr>" for k, v in rows)
        shown = "".join(f"<li>{html.escape(str(s))}: {html.escape(r)}</li>" for s, r in self.skipped[:5])
        more = f"<ul>{shown}</ul>" if shown else ""
        return f"<div><b>Embeddings</b><table>{body}</table>{more}</div>"


# ---------------------------------------------------------------------------------- public entry point
def embed(model, images=None, texts=None, labels=None, *, batch_size: int = 64, text_batch_size: int = 256,
          cache=None, cache_key: str = "stat", pairs=None, thumbnail_size: int = THUMBNAIL_SIZE, workers: int = 1,
          progress: bool | None = None, engine: str = "local", output=None, **engine_options):
    """Embed ``images`` and/or ``texts`` with ``model`` (a :class:`clipviz.HookedCLIP`).

    ``images``: a folder (searched recursively, sorted), one file, or a list of paths / PIL images /
    arrays. Images are loaded lazily, ``batch_size`` at a time, decoded in ``workers`` background
    threads while the model runs. An unreadable image is skipped and listed in ``.skipped``.
    ``labels``: one per row (images first, then texts), or ``{"images": [...], "texts": [...]}``.
    Images from a folder with sub-folders are labelled by their sub-folder when no labels are given.
    ``pairs``: ``(image index, text index)`` pairs that belong together (e.g. captions), drawn as lines.
    ``cache``: a directory; finished batches are stored there and reused (see the module docstring).
    ``cache_key``: how a file input is recognised in the cache: ``"stat"`` (path, size, mtime) or
    ``"content"`` (path and a hash of its bytes).
    ``progress``: a tqdm bar; by default shown when there are more than a few batches.

    ``engine="ray"``: embed on Ray Data instead, writing Parquet shards and a metadata file to
    ``output`` (a folder) and returning :meth:`Embeddings.open` of it; ``images`` may then also be a
    Parquet file of paths (and texts). Further options (``concurrency``, ``num_gpus``, ``resume``)
    are documented in :func:`clipviz.scale.ray_engine.embed_with_ray`.
    """
    if engine == "ray":
        if cache is not None:
            raise ValueError("cache= is for engine='local'; with engine='ray' the output= folder is the cache "
                             "(a rerun resumes it)")
        from .scale.ray_engine import embed_with_ray

        return embed_with_ray(model, images=images, texts=texts, labels=labels, output=output,
                              batch_size=batch_size, text_batch_size=text_batch_size,
                              thumbnail_size=thumbnail_size, progress=progress, **engine_options)
    if engine != "local":
        raise ValueError(f"engine={engine!r} is not known: pass 'local' (this process) or 'ray' (Ray Data)")
    if output is not None or engine_options:
        extra = ["output"] * (output is not None) + sorted(engine_options)
        raise TypeError(f"{', '.join(extra)} only apply to engine='ray'")
    if images is None and texts is None:
        raise ValueError("nothing to embed: pass images= and/or texts=")
    if batch_size < 1 or text_batch_size < 1:
        raise ValueError("batch sizes must be at least 1")
    if cache_key not in CACHE_KEYS:
        raise ValueError(f"cache_key={cache_key!r} is not known: pass 'stat' (path, size, mtime) or "
                         "'content' (a hash of each file's bytes)")
    store = ShardStore(cache, argument="cache") if cache is not None else None  # refuse a bad path before work
    image_sources, folder_labels = _image_sources(images)
    text_list = _text_list(texts)
    image_labels, text_labels = _split_labels(labels, len(image_sources), len(text_list), folder_labels)

    image_batches = [image_sources[i : i + batch_size] for i in range(0, len(image_sources), batch_size)]
    text_batches = [text_list[i : i + text_batch_size] for i in range(0, len(text_list), text_batch_size)]
    total = len(image_batches) + len(text_batches)
    show = total > _PROGRESS_MIN_BATCHES if progress is None else progress
    bar = _progress_bar(len(image_sources) + len(text_list), show)

    image_keys, text_keys = [None] * len(image_batches), [None] * len(text_batches)
    if store is not None:  # keys only matter for the cache: skip hashing (and stat-ing files) without one
        model_key = model_fingerprint(model)
        image_prep = _hash(_processor_settings(model), f"thumb={thumbnail_size}", f"format={CACHE_FORMAT}")
        text_prep = _hash(_tokenizer_settings(model), f"format={CACHE_FORMAT}")
        store = ShardStore(store.directory / model_key[:20], argument="cache")
        image_keys = [_hash(model_key, image_prep, "image", *(_fingerprint(s, cache_key) for s in b))
                      for b in image_batches]
        text_keys = [_hash(model_key, text_prep, "text", *b) for b in text_batches]

    image_results, text_results = [], []
    try:
        image_results = list(_run_image_batches(model, image_batches, image_keys, store, thumbnail_size, workers, bar))
        for batch, key in zip(text_batches, text_keys):
            result = store.read(key) if store else None
            if result is None:
                result = _embed_text_batch(model, batch)
                if store:
                    store.write(key, result)
            text_results.append(result)
            bar.update(len(batch))
    finally:
        bar.close()

    run = _Run(model_name=getattr(model, "name", ""), dim=_output_dim(model), image_sources=image_sources,
               text_list=text_list, image_labels=image_labels, text_labels=text_labels,
               image_batches=image_batches, image_results=image_results, text_results=text_results,
               pairs=pairs, thumbnail_size=thumbnail_size, store=store, keys=image_keys + text_keys,
               fingerprint=model_fingerprint(model) if store is not None else "")
    return _assemble(run)


# ---------------------------------------------------------------------------------- inputs
def _image_sources(images) -> tuple[list, list | None]:
    if images is None:
        return [], None
    if isinstance(images, (str, os.PathLike)) and Path(images).is_dir():
        folder = Path(images)
        files = _images.image_files(folder)
        if not files:
            raise _images.ImageLoadError(f"no image files ({', '.join(_images.IMAGE_SUFFIXES)}) under {folder}")
        nested = any(f.parent != folder for f in files)
        return files, ([f.parent.relative_to(folder).as_posix() for f in files] if nested else None)
    if isinstance(images, np.ndarray) and images.ndim == 4:  # a batch [N, H, W, C] of arrays
        images = list(images)
    sources = list(_images.as_list(images))
    if not sources:
        raise ValueError("images= is empty: pass a folder, a file, or a non-empty list of images")
    return sources, None


def _text_list(texts) -> list[str]:
    if texts is None:
        return []
    from .model import as_text_list

    return as_text_list(texts)


def _split_labels(labels, n_images: int, n_texts: int, folder_labels) -> tuple[list, list]:
    if labels is None:
        return (folder_labels or [None] * n_images), [None] * n_texts
    if isinstance(labels, dict):
        unknown = set(labels) - {"images", "texts"}
        if unknown:
            raise ValueError(f"labels dict takes the keys 'images' and 'texts', not {sorted(unknown)}")
        image_labels = list(labels.get("images") or folder_labels or [None] * n_images)
        text_labels = list(labels.get("texts") or [None] * n_texts)
        for what, got, want in (("image", image_labels, n_images), ("text", text_labels, n_texts)):
            if len(got) != want:
                raise ValueError(f"labels['{what}s'] has {len(got)} entries but {want} {what}s were given")
        return image_labels, text_labels
    if isinstance(labels, str):
        raise TypeError("labels must be a list (one per row) or a dict {'images': [...], 'texts': [...]}, not a string")
    labels = list(labels)
    if len(labels) != n_images + n_texts:
        raise ValueError(
            f"{len(labels)} labels were given for {n_images} images + {n_texts} texts = {n_images + n_texts} rows. "
            "Give one label per row (images first, then texts), or labels={'images': [...], 'texts': [...]}."
        )
    return labels[:n_images], labels[n_images:]


def _fingerprint(source, cache_key: str = "stat") -> str:
    """What identifies an input for the cache (see the module docstring): a file by path + size + mtime
    (``"stat"``) or path + a hash of its bytes (``"content"``); in-memory content by hash."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser().absolute()
        try:
            if cache_key == "content":
                from .store import file_sha256

                return f"file:{path}:sha256:{file_sha256(path)}"
            stat = path.stat()
        except OSError:
            return f"missing:{path}"
        return f"file:{path}:{stat.st_size}:{stat.st_mtime_ns}"
    if isinstance(source, np.ndarray):
        return "array:" + _hash(str(source.shape), str(source.dtype), np.ascontiguousarray(source).tobytes())
    try:
        from PIL import Image

        if isinstance(source, Image.Image):
            return "pil:" + _hash(source.mode, str(source.size), str(source.info.get("exif", b"")[:64]),
                                  source.tobytes())
    except ImportError:  # pragma: no cover - Pillow is a dependency
        pass
    return "object:" + _hash(repr(source))  # will fail to load and be reported as skipped


def _hash(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else str(part).encode("utf-8", "surrogatepass"))
        digest.update(b"\x00")
    return digest.hexdigest()


def model_fingerprint(model) -> str:
    """A hash of the model's name, config, processor settings and its weights.

    Each weight tensor contributes its name, shape, dtype, its sum and up to 4,096 evenly strided
    values, and the model's ``weights_version()`` (a checksum of every value, so edits through
    ``.data`` count too). The result is remembered per model with that version, so a later call
    costs one pass over the weights (~0.4 s for ViT-B/32, see BENCHMARKS.md) unless a weight changed.
    """
    import torch

    state = model.model.state_dict()
    version = model.weights_version()  # reads every value: sees edits through .data too
    remembered = _FINGERPRINTS.get(model)
    if remembered is not None and remembered[0] == version:
        return remembered[1]
    parts = [getattr(model, "name", ""), model.model.config.to_json_string(use_diff=False), _processor_settings(model),
             version]
    with torch.no_grad():
        for name, tensor in state.items():
            flat = tensor.detach().reshape(-1)
            step = max(1, flat.numel() // 4096)
            sample = flat[::step].to("cpu", torch.float64)
            total = float(flat.sum(dtype=torch.float32)) if flat.numel() and flat.is_floating_point() else 0.0
            parts += [name, str(tuple(tensor.shape)), str(tensor.dtype), repr(total), sample.numpy().tobytes()]
    digest = _hash(*parts)
    try:
        _FINGERPRINTS[model] = (version, digest)
    except TypeError:  # a model object that cannot be weakly referenced: just recompute next time
        pass
    return digest


# model -> (weights version, fingerprint): kept here rather than written onto the model
_FINGERPRINTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _tokenizer_settings(model) -> str:
    tokenizer = getattr(model.processor, "tokenizer", None)
    return f"{type(tokenizer).__name__}:{len(tokenizer) if tokenizer is not None else 0}:{model.context_length}"


def _processor_settings(model) -> str:
    processor = getattr(model.processor, "image_processor", model.processor)
    try:
        return processor.to_json_string()
    except Exception:  # a processor without JSON form: its repr is the next best description
        return repr(processor)


# ---------------------------------------------------------------------------------- image batches
def _prepare_image_batch(model, sources: Sequence, thumbnail_size: int):
    """Decode and preprocess one batch (runs in a worker thread): pixels, thumbnails, skipped positions."""
    loaded, thumbs, skipped = [], [], []
    for position, source in enumerate(sources):
        try:
            image = _images.load_image(source)
        except (_images.ImageLoadError, OSError, ValueError) as error:
            skipped.append((position, str(error)))
            continue
        loaded.append(image)
        if thumbnail_size:
            thumbs.append(_thumbnail(image, thumbnail_size))
    pixels = model.processor.image_processor(images=loaded, return_tensors="pt")["pixel_values"] if loaded else None
    thumbs = np.stack(thumbs) if thumbs else np.zeros((0, thumbnail_size, thumbnail_size, 3), np.uint8)
    return pixels, thumbs, skipped


def _thumbnail(image, side: int) -> np.ndarray:
    """The whole image shrunk to fit a ``side``×``side`` square, centred on white."""
    from PIL import Image

    small = image.copy()
    small.thumbnail((side, side), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (side, side), (255, 255, 255))
    canvas.paste(small, ((side - small.width) // 2, (side - small.height) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def _prefetched(function, items: list, workers: int, ahead: int) -> Iterator:
    """``function(item)`` for each item, in order, computed up to ``ahead`` items early in threads."""
    if workers <= 0:
        yield from (function(item) for item in items)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="clipviz-embed")
    pending = deque()
    try:
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) > ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:  # an interrupted consumer: drop queued work, do not decode it for nothing
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _run_image_batches(model, batches, keys, store, thumbnail_size, workers, bar) -> Iterator[BatchResult]:
    import torch

    cached = {i: store.read(key) for i, key in enumerate(keys)} if store else {}
    todo = [i for i in range(len(batches)) if cached.get(i) is None]
    prepared = _prefetched(lambda i: _prepare_image_batch(model, batches[i], thumbnail_size),
                           todo, workers, ahead=max(2, 2 * workers))
    try:
        for i, batch in enumerate(batches):
            result = cached.get(i)
            if result is None:
                pixels, thumbs, skipped = next(prepared)
                if pixels is not None:
                    with torch.no_grad():
                        vectors = model.image_features(pixels.to(device=model.device, dtype=model.dtype))
                    vectors = vectors.float().cpu().numpy()
                else:
                    vectors = np.zeros((0, _output_dim(model)), np.float32)
                result = BatchResult(np.ascontiguousarray(vectors, np.float32), thumbs, skipped)
                if store:
                    store.write(keys[i], result)
            bar.update(len(batch))
            yield result
    finally:
        prepared.close()


def _embed_text_batch(model, texts: list[str]) -> BatchResult:
    import torch

    with torch.no_grad():
        vectors = model.text_features(model.tokenize(texts)).float().cpu().numpy()
    return BatchResult(np.ascontiguousarray(vectors, np.float32), np.zeros((0, 0, 0, 3), np.uint8), [])


def _output_dim(model) -> int:
    """Width of the vectors ``model`` makes: the joint space's, or a single tower's output (see clipviz.towers)."""
    from .towers import vector_sizes

    layout = getattr(model, "layout", None)
    if layout is None:  # a bare dual model
        return int(model.model.config.projection_dim)
    return int(vector_sizes(layout, layout.towers[0])[1])


# ---------------------------------------------------------------------------------- assembly
@dataclass
class _Run:
    """Everything one ``embed`` call computed or was given, for :func:`_assemble`."""

    model_name: str
    dim: int
    image_sources: list
    text_list: list
    image_labels: list
    text_labels: list
    image_batches: list
    image_results: list  # [BatchResult], one per image batch
    text_results: list  # [BatchResult], one per text batch
    pairs: object
    thumbnail_size: int
    store: ShardStore | None
    keys: list
    fingerprint: str = ""


def _assemble(run: _Run) -> Embeddings:
    image_sources, text_list = run.image_sources, run.text_list
    skipped, kept_positions = [], []
    for b, (batch, result) in enumerate(zip(run.image_batches, run.image_results)):
        bad = {position for position, _ in result.skipped}
        start = b * len(run.image_batches[0])
        skipped += [(_describe(batch[p], start + p), reason) for p, reason in result.skipped]
        kept_positions += [start + p for p in range(len(batch)) if p not in bad]
    kept_images = np.asarray(kept_positions, dtype=np.int64)
    parts = [r.vectors for r in run.image_results] + [r.vectors for r in run.text_results]
    dim = run.dim if not parts else parts[0].shape[1]
    n_rows = len(kept_images) + len(text_list)

    thumb_parts = [r.thumbnails for r in run.image_results if len(r.thumbnails)]
    run_key = None
    if run.store is not None:
        # One consolidated, memory-mapped file per run: a rerun opens it instead of concatenating shards.
        run_key = _hash("run", *run.keys)
        vectors = run.store.consolidated(run_key, "vectors", parts, (n_rows, dim), np.float32)
        side = run.thumbnail_size
        thumb_shape = (len(kept_images), side, side, 3) if thumb_parts else (0, 0, 0, 3)
        thumbnails = run.store.consolidated(run_key, "thumbs", thumb_parts, thumb_shape, np.uint8)
    else:
        vectors = np.concatenate(parts).astype(np.float32, copy=False) if parts else np.zeros((0, dim), np.float32)
        thumbnails = np.concatenate(thumb_parts) if thumb_parts else np.zeros((0, 0, 0, 3), np.uint8)

    if skipped:
        listed = "; ".join(f"{s}: {r}" for s, r in skipped[:3])
        warnings.warn(f"{len(skipped)} of {len(image_sources)} images could not be read and were skipped "
                      f"(listed in .skipped): {listed}{' ...' if len(skipped) > 3 else ''}", stacklevel=3)
    if len(kept_images) == 0 and not text_list:
        raise _images.ImageLoadError(f"none of the {len(image_sources)} images could be read: {skipped[0][1]}")

    labels = [run.image_labels[i] for i in kept_images] + list(run.text_labels)
    sources = [_describe(image_sources[i], i) for i in kept_images] + list(text_list)
    index = np.concatenate([kept_images, np.arange(len(text_list))]).astype(np.int64)
    modality = np.array(["image"] * len(kept_images) + ["text"] * len(text_list))
    result = Embeddings(vectors, modality, _object_array(labels), sources, index, thumbnails,
                        _pair_rows(run.pairs, kept_images, len(image_sources), len(text_list)), skipped,
                        run.model_name, [image_sources[i] for i in kept_images] + list(text_list),
                        fingerprint=run.fingerprint)
    if run_key is not None:
        from .readers import write_cache_run_record

        write_cache_run_record(run.store, run_key, result)
    return result


def _pair_rows(pairs, kept_images: np.ndarray, n_images: int, n_texts: int) -> np.ndarray | None:
    if pairs is None:
        return None
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if len(pairs) and (pairs[:, 0].min() < 0 or pairs[:, 0].max() >= n_images
                       or pairs[:, 1].min() < 0 or pairs[:, 1].max() >= n_texts):
        raise ValueError(f"pairs must be (image index, text index) within {n_images} images and {n_texts} texts")
    image_row = np.full(n_images, -1)
    image_row[kept_images] = np.arange(len(kept_images))
    rows = np.stack([image_row[pairs[:, 0]], len(kept_images) + pairs[:, 1]], axis=1)
    return rows[rows[:, 0] >= 0]  # pairs whose image was skipped are dropped


def _describe(source, position: int | None = None) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return f"<image {position}>" if position is not None else f"<{type(source).__name__}>"


def _object_array(values) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = list(values)
    return array


def _unit(vectors: np.ndarray, block: int = 16_384) -> np.ndarray:
    """Rows scaled to unit length, as float32. Norms are summed in float64 a block of rows at a time, so
    100,000 × 512 vectors need a few MB of scratch, not two float64 copies (800 MB)."""
    norms = np.empty((len(vectors), 1), np.float64)
    for start in range(0, len(vectors), block):
        rows = vectors[start : start + block].astype(np.float64)
        norms[start : start + block, 0] = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    if np.any(norms == 0):
        raise ValueError("some vectors are all zeros and have no direction")
    if np.all(np.abs(norms - 1) < 1e-6):
        return vectors.astype(np.float32)  # already unit: dividing again would only add rounding noise
    out = np.empty(vectors.shape, np.float32)
    for start in range(0, len(vectors), block):
        out[start : start + block] = vectors[start : start + block] / norms[start : start + block]
    return out


def _progress_bar(total: int, show: bool):
    if show:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc="embedding", unit="item")
    return _NoBar()


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass
