"""Opening embedding collections written by clipviz or by other tools, memory-mapped.

:meth:`clipviz.embeddings.Embeddings.open` recognises four layouts:

1. **clipviz's Ray output** (``clipviz.embed(..., engine="ray", output=DIR)``): ``DIR/clipviz-embeddings.json``
   (model name, family, weights fingerprint, ...) and ``DIR/shards/*.parquet`` with ``row_id``,
   ``modality``, ``source``, ``label``, ``embedding``, ``error``. Rows come back in ``row_id`` order
   (images first, then texts); rows whose ``error`` is set are listed in ``.skipped``.
2. **clipviz's single-process cache** (``clipviz.embed(..., cache=DIR)``): the newest ``*.run.json``
   record under ``DIR`` (or the record given), whose vectors are already one ``.npy``.
3. **clip-retrieval** (Beaumont, 2021; ``clip-retrieval inference``): ``img_emb/img_emb_{i}.npy``,
   ``text_emb/text_emb_{i}.npy`` and ``metadata/metadata_{i}.parquet``, row ``j`` of each part
   describing the same sample. Images become the first rows, captions the next, paired ``(j, j)``.
   The layout does not record the model: such a collection carries no fingerprint.
4. **any Parquet** (a file or a folder of them) with one embedding column: Ray Data's Arrow tensor
   type (``ray.data.arrow_tensor``/``_v2``, readable without Ray: its storage is a list column),
   ``list<float>``, ``large_list<float>`` or ``fixed_size_list<float>``. Optional columns
   ``modality``, ``label`` and a source (``path``, ``image_path``, ``url``, ``text``, ``caption``).

Vectors are never loaded whole: ``.npy`` files are memory-mapped; several ``.npy`` parts or Parquet
columns are streamed (one row group at a time) into one ``.npy`` that is then memory-mapped. Those
conversions are kept, keyed by the files' names, sizes and modification times, so reopening is instant.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from .store import atomic_save_parts, atomic_write, atomic_write_bytes, file_sha256

METADATA_FILE = "clipviz-embeddings.json"
SHARDS_DIR = "shards"
FAILURES_FILE = "failures.jsonl"
CACHE_RUN_SUFFIX = ".run.json"
EMBEDDING_COLUMNS = ("embedding", "embeddings", "vector", "vectors", "emb", "image_embedding", "text_embedding")
SOURCE_COLUMNS = ("source", "path", "image_path", "filepath", "url", "text", "caption")
_LOCAL_CACHE = ".clipviz-cache"


def read_metadata(folder) -> dict | None:
    """The metadata record of a clipviz Ray output folder, or ``None`` when there is none."""
    path = Path(folder) / METADATA_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable clipviz metadata file ({error}); move the folder aside") from None


def open_collection(path, *, cache=None, embedding_column: str | None = None):
    try:
        path = Path(path).expanduser()
    except TypeError:
        raise TypeError(f"path must be a folder or file path, not {type(path).__name__}") from None
    if not path.exists():
        raise FileNotFoundError(f"path={str(path)!r} does not exist: pass a folder written by clipviz.embed, a "
                                "clip-retrieval folder (img_emb/, metadata/) or a Parquet file")
    if path.is_file() and path.name.endswith(CACHE_RUN_SUFFIX):
        return _open_cache_run(path)
    if path.is_dir() and (path / METADATA_FILE).is_file():
        return _open_ray_output(path, cache)
    if path.is_dir() and ((path / "img_emb").is_dir() or (path / "text_emb").is_dir()):
        return _open_clip_retrieval(path, cache)
    parquet = [path] if path.is_file() and path.suffix == ".parquet" else sorted(path.rglob("*.parquet")) \
        if path.is_dir() else []
    if path.is_dir():
        runs = sorted(path.rglob(f"*{CACHE_RUN_SUFFIX}"), key=lambda p: p.stat().st_mtime_ns)
        if runs and not parquet:
            return _open_cache_run(runs[-1])
    if parquet:
        return _open_parquet(path, parquet, cache, embedding_column)
    raise ValueError(f"path={str(path)!r} holds no collection clipviz can read: expected {METADATA_FILE}, "
                     f"a clipviz cache (*{CACHE_RUN_SUFFIX}), img_emb/*.npy + metadata/*.parquet, or *.parquet")


# ---------------------------------------------------------------------------------- layout 2: embed's cache
def write_cache_run_record(store, run_key: str, emb) -> None:
    """Beside a consolidated run of ``clipviz.embed(cache=...)``: what its rows are, so it can be opened."""
    record = {
        "layout": "clipviz-cache/1", "model_name": emb.model_name, "fingerprint": emb.fingerprint,
        "vectors": store._path(run_key, "run.vectors.npy").name, "thumbnails": store._path(run_key, "run.thumbs.npy").name,
        "modality": [str(m) for m in emb.modality], "sources": [str(s) for s in emb.sources],
        "labels": [None if x is None else str(x) for x in emb.labels], "index": [int(i) for i in emb.index],
        "pairs": None if emb.pairs is None else emb.pairs.tolist(), "skipped": [list(s) for s in emb.skipped],
    }
    atomic_write_bytes(store._path(run_key, CACHE_RUN_SUFFIX.lstrip(".")), json.dumps(record).encode())


def _open_cache_run(record_path: Path):
    from .embeddings import Embeddings, _object_array

    record = json.loads(record_path.read_text())
    vectors = np.load(record_path.parent / record["vectors"], mmap_mode="r")
    thumbs_path = record_path.parent / record["thumbnails"]
    thumbnails = np.load(thumbs_path, mmap_mode="r") if thumbs_path.is_file() else np.zeros((0, 0, 0, 3), np.uint8)
    pairs = None if record["pairs"] is None else np.asarray(record["pairs"], np.int64).reshape(-1, 2)
    return Embeddings(vectors, np.array(record["modality"]), _object_array(record["labels"]), record["sources"],
                      np.asarray(record["index"], np.int64), thumbnails, pairs,
                      [tuple(s) for s in record["skipped"]], record["model_name"], list(record["sources"]),
                      fingerprint=record.get("fingerprint", ""), metadata={"layout": record["layout"]})


# ---------------------------------------------------------------------------------- layout 1: Ray output
def _open_ray_output(folder: Path, cache):
    import pyarrow.parquet as pq

    from .embeddings import Embeddings, _object_array

    metadata = read_metadata(folder)
    if metadata.get("status") != "complete":
        raise ValueError(f"{folder} holds an unfinished run ({metadata.get('status')}): rerun the same "
                         "clipviz.embed(..., engine='ray', output=...) call to complete it")
    shards = sorted((folder / SHARDS_DIR).glob("*.parquet"))
    columns = {"row_id": [], "modality": [], "source": [], "label": [], "error": []}
    for shard in shards:
        table = pq.read_table(shard, columns=list(columns))
        for name, parts in columns.items():
            parts.append(table.column(name).to_numpy(zero_copy_only=False) if name == "row_id"
                         else table.column(name).to_pylist())
    row_ids = np.concatenate(columns["row_id"]) if shards else np.zeros(0, np.int64)
    flat = {name: [v for part in parts for v in part] for name, parts in columns.items() if name != "row_id"}
    ok = np.array([e is None for e in flat["error"]], dtype=bool)
    order = np.argsort(row_ids, kind="stable")
    kept_order = order[ok[order]]  # positions (in shard order) of the rows kept, sorted by row id
    destination = np.empty(len(row_ids), np.int64)
    destination[kept_order] = np.arange(len(kept_order))
    dim = int(metadata["dim"])

    def fill(out):
        start = 0
        for shard in shards:
            parquet = pq.ParquetFile(shard)
            for group in range(parquet.num_row_groups):
                values = _vectors_of(parquet.read_row_group(group, columns=["embedding"]).column("embedding"))
                stop = start + len(values)
                keep = ok[start:stop]
                out[destination[start:stop][keep]] = values[keep]
                start = stop

    key = _files_key(shards)
    vectors = _converted(folder, cache, f"ray-{key}", (len(kept_order), dim), np.float32, fill=fill)
    skipped = [(flat["source"][i], flat["error"][i]) for i in order if not ok[i]]
    modality = np.array([flat["modality"][i] for i in kept_order])
    sources = [flat["source"][i] for i in kept_order]
    kept_ids = row_ids[kept_order]
    index = np.where(modality == "image", kept_ids, kept_ids - int(metadata["images"]))  # texts count from 0
    return Embeddings(vectors, modality, _object_array([flat["label"][i] for i in kept_order]), sources,
                      index.astype(np.int64), np.zeros((0, 0, 0, 3), np.uint8), None, skipped,
                      metadata.get("model_name", ""), list(sources), fingerprint=metadata.get("weights_fingerprint", ""),
                      metadata=metadata)


# ---------------------------------------------------------------------------------- layout 3: clip-retrieval
def _numbered(folder: Path, pattern: str) -> list[Path]:
    def number(p: Path) -> int:
        found = re.findall(r"(\d+)", p.stem)
        return int(found[-1]) if found else -1

    return sorted(folder.glob(pattern), key=lambda p: (number(p), p.name)) if folder.is_dir() else []


def _open_clip_retrieval(folder: Path, cache):
    import pyarrow.parquet as pq

    from .embeddings import Embeddings, _object_array

    image_parts = _numbered(folder / "img_emb", "*.npy")
    text_parts = _numbered(folder / "text_emb", "*.npy")
    meta_parts = _numbered(folder / "metadata", "*.parquet")
    arrays = {what: [np.load(p, mmap_mode="r") for p in parts] for what, parts in
              (("image", image_parts), ("text", text_parts))}
    for what, parts in arrays.items():
        for path, array in zip(image_parts if what == "image" else text_parts, parts):
            if array.ndim != 2:
                raise ValueError(f"{path} holds an array of shape {array.shape}, not [n, d] vectors")
    n_images = sum(len(a) for a in arrays["image"])
    n_texts = sum(len(a) for a in arrays["text"])
    dims = {a.shape[1] for parts in arrays.values() for a in parts}
    if len(dims) != 1:
        raise ValueError(f"{folder}: the .npy parts disagree on the vector width: {sorted(dims)}")
    dim = dims.pop()
    dtype = np.result_type(*[a.dtype for parts in arrays.values() for a in parts])

    metadata = {}
    if meta_parts:
        tables = [pq.read_table(p) for p in meta_parts]
        names = tables[0].column_names
        metadata = {name: [v for t in tables for v in t.column(name).to_pylist()] for name in names
                    if all(name in t.column_names for t in tables)}
    n_meta = len(next(iter(metadata.values()))) if metadata else None
    for what, n in (("img_emb", n_images), ("text_emb", n_texts)):
        if n and n_meta is not None and n != n_meta:
            raise ValueError(f"{folder}: {what} holds {n} vectors but metadata/ describes {n_meta} samples; "
                             "the parts must line up row for row")
    image_sources = _first_column(metadata, ("image_path", "path", "url", "filepath"), n_images, "image")
    captions = _first_column(metadata, ("caption", "text"), n_texts, "text")
    labels = metadata.get("label", [None] * max(n_images, n_texts))

    parts = arrays["image"] + arrays["text"]
    if len(parts) == 1:
        vectors = parts[0]
    else:
        vectors = _converted(folder, cache, f"clip-retrieval-{_files_key(image_parts + text_parts)}",
                             (n_images + n_texts, dim), dtype, parts=parts)
    modality = np.array(["image"] * n_images + ["text"] * n_texts)
    pairs = np.stack([np.arange(n_images), n_images + np.arange(n_images)], 1) if n_images and n_images == n_texts \
        else None
    sources = image_sources + captions
    return Embeddings(vectors, modality, _object_array(labels[:n_images] + labels[:n_texts]), sources,
                      np.concatenate([np.arange(n_images), np.arange(n_texts)]).astype(np.int64),
                      np.zeros((0, 0, 0, 3), np.uint8), pairs, [], "", list(sources),
                      metadata={"layout": "clip-retrieval"})


def _first_column(metadata: dict, names, n: int, what: str) -> list:
    for name in names:
        if name in metadata and n:
            return [str(v) for v in metadata[name][:n]]
    return [f"<{what} {i}>" for i in range(n)]


# ---------------------------------------------------------------------------------- layout 4: any Parquet
def _open_parquet(root: Path, files: list[Path], cache, embedding_column):
    import pyarrow.parquet as pq

    from .embeddings import Embeddings, _object_array

    schema = pq.ParquetFile(files[0]).schema_arrow
    column = embedding_column or _find_embedding_column(schema, files[0])
    if column not in schema.names:
        raise ValueError(f"embedding_column={column!r} is not a column of {files[0]} (columns: {schema.names})")
    others = [c for c in schema.names if c != column]
    side = {name: [] for name in others if name in ("modality", "label", *SOURCE_COLUMNS)}
    n, dim = 0, None
    for f in files:
        parquet = pq.ParquetFile(f)
        n += parquet.metadata.num_rows
        if side:
            table = parquet.read(columns=list(side))
            for name in side:
                side[name] += table.column(name).to_pylist()
        if dim is None and parquet.num_row_groups:
            first = _vectors_of(parquet.read_row_group(0, columns=[column]).column(column)[:1])
            dim = first.shape[1] if len(first) else None
    if dim is None:
        raise ValueError(f"{root}: the Parquet files hold no rows")

    def parts():
        for f in files:
            parquet = pq.ParquetFile(f)
            for group in range(parquet.num_row_groups):
                yield _vectors_of(parquet.read_row_group(group, columns=[column]).column(column))

    vectors = _converted(root if root.is_dir() else root.parent, cache, f"parquet-{_files_key(files)}-{column}",
                         (n, dim), np.float32, parts=parts())
    modality = np.array([str(m) for m in side["modality"]]) if "modality" in side else np.array(["image"] * n)
    source_name = next((c for c in SOURCE_COLUMNS if c in side), None)
    sources = [str(s) for s in side[source_name]] if source_name else [f"<row {i}>" for i in range(n)]
    labels = side.get("label", [None] * n)
    order = np.argsort(modality != "image", kind="stable")  # images first, as everywhere in clipviz
    if not np.array_equal(order, np.arange(n)):
        raise ValueError(f"{root}: image rows must come before text rows (clipviz keeps images first); "
                         "sort the Parquet by modality")
    return Embeddings(vectors, modality, _object_array(labels), sources, np.arange(n, dtype=np.int64),
                      np.zeros((0, 0, 0, 3), np.uint8), None, [], "", list(sources),
                      metadata={"layout": "parquet", "embedding_column": column})


def _find_embedding_column(schema, path) -> str:
    import pyarrow as pa

    def is_vector(field) -> bool:
        kind = field.type.storage_type if isinstance(field.type, pa.ExtensionType) else field.type
        tensor = (field.metadata or {}).get(b"ARROW:extension:name", b"").startswith(b"ray.data.arrow_tensor")
        listed = pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
        return tensor or (listed and pa.types.is_floating(kind.value_type))

    for name in EMBEDDING_COLUMNS:
        if name in schema.names and is_vector(schema.field(name)):
            return name
    candidates = [f.name for f in schema if is_vector(f)]
    if len(candidates) == 1:
        return candidates[0]
    raise ValueError(f"{path}: cannot tell which column holds the embeddings (vector columns: {candidates}; "
                     f"all columns: {schema.names}): pass embedding_column=")


def _vectors_of(column) -> np.ndarray:
    """``[n, d]`` from a Parquet/Arrow vector column: Ray's tensor type, or any list of floats."""
    import pyarrow as pa
    import pyarrow.compute as pc

    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out = []
    for chunk in chunks:
        if isinstance(chunk.type, pa.ExtensionType):
            chunk = chunk.storage  # Ray's ArrowTensorType(V2) keeps the vectors as a list column
        if chunk.null_count:
            raise ValueError("the embedding column has empty (null) rows: drop them before opening")
        if pa.types.is_fixed_size_list(chunk.type):
            width = chunk.type.list_size
        else:
            lengths = pc.list_value_length(chunk).to_numpy(zero_copy_only=False)
            if len(lengths) and (lengths != lengths[0]).any():
                raise ValueError(f"the embedding column holds vectors of different lengths "
                                 f"({sorted(set(lengths.tolist()))[:5]})")
            width = int(lengths[0]) if len(lengths) else 0
        values = pc.list_flatten(chunk).to_numpy(zero_copy_only=False)
        out.append(values.reshape(len(chunk), width))
    return np.concatenate(out) if len(out) != 1 else out[0]


# ---------------------------------------------------------------------------------- converted vectors
def _files_key(files) -> str:
    from .embeddings import _hash

    return _hash(*[f"{Path(f).name}:{Path(f).stat().st_size}:{Path(f).stat().st_mtime_ns}" for f in files])[:16]


def _cache_folder(collection: Path, cache) -> Path:
    from .store import writable_directory

    if cache is not None:
        return writable_directory(cache, "cache")
    local = collection / _LOCAL_CACHE
    try:
        return writable_directory(local, "cache")
    except OSError:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "clipviz" / "collections"
        from .embeddings import _hash

        return writable_directory(base / _hash(str(collection.absolute()))[:16], "cache")


def _converted(collection: Path, cache, name: str, shape: tuple, dtype, *, parts=None, fill=None) -> np.ndarray:
    """One memory-mapped ``.npy`` made once from ``parts`` (streamed) or by ``fill(memmap)`` (random access)."""
    folder = _cache_folder(collection, cache)
    path, mark = folder / f"{name}.npy", folder / f"{name}.json"
    try:
        existing = np.load(path, mmap_mode="r")
        if (existing.shape == tuple(shape) and existing.dtype == dtype
                and json.loads(mark.read_text()).get("sha256") == file_sha256(path)):
            return existing
    except (OSError, ValueError, AttributeError):
        pass
    if fill is not None:
        def write(temporary):
            out = np.lib.format.open_memmap(temporary, mode="w+", dtype=dtype, shape=tuple(shape))
            fill(out)
            out.flush()
            del out

        sha = atomic_write(path, write, by_path=True)
    else:
        sha = atomic_save_parts(path, parts, shape, dtype)
    atomic_write_bytes(mark, json.dumps({"sha256": sha}).encode())
    return np.load(path, mmap_mode="r")
