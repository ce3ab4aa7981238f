"""``clipviz.embed(model, images=..., engine="ray", output=DIR)``: batch inference on Ray Data.

The pattern is Ray Data's offline batch inference (``Dataset.map_batches`` with a callable class,
as in Ray's CLIP image-search example): an actor pool where each actor loads the model once and
embeds one batch per call, streamed into ``write_parquet``. Nothing is collected on the driver: it
holds the list of inputs (paths and texts) and the Parquet files are written by the workers.

Output folder ``DIR`` (read back with :meth:`clipviz.embeddings.Embeddings.open`):

- ``shards/*.parquet``: one row per input: ``row_id`` (images first, then texts, in the order given),
  ``modality``, ``source`` (the path or the text), ``label``, ``embedding`` (float32, unit norm; Ray's
  Arrow tensor type) and ``error`` (the reason an image could not be read, else null; its
  embedding is then zeros and readers drop the row);
- ``clipviz-embeddings.json``: model name, family, processor and tokenizer settings, a fingerprint of
  the weights, the clipviz version, a hash of the inputs, the row count and ``status``
  (``running`` until the run completes);
- ``failures.jsonl``: one ``{"row_id", "source", "reason"}`` per unreadable input.

Faults: Ray restarts a dead actor and retries its task (``max_restarts``/``max_task_retries`` are
unlimited for Ray Data actor pools), and a block is written once, after its batches are embedded, so
a killed worker costs time, not rows. Rerunning into the same folder with the same model and inputs
resumes: rows already in readable shards are skipped. Another model or other inputs are refused,
so one folder never mixes two models' vectors.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from .. import __version__
from .. import embeddings as _embeddings
from ..readers import FAILURES_FILE, METADATA_FILE, SHARDS_DIR, read_metadata
from ..store import atomic_write_bytes, writable_directory

LAYOUT = "clipviz-parquet/1"
_BLOCK_BATCHES = 4  # input blocks of this many batches: enough blocks to keep every actor busy


def embed_with_ray(model, images=None, texts=None, labels=None, *, output=None, batch_size: int = 64,
                   text_batch_size: int = 256, thumbnail_size: int = 0, progress: bool | None = None,
                   concurrency: int | tuple | None = None, num_gpus: float | None = None,
                   model_source: str | None = None, resume: bool = True):
    """Embed on Ray Data into ``output`` (a folder) and return ``Embeddings.open(output)``.

    ``images``: a folder, a list of image paths, or a ``.parquet`` file with a ``path`` column
    (and optionally ``text`` and ``label`` columns; each non-empty ``text`` becomes a text row).
    ``texts``/``labels`` as in :func:`clipviz.embed`. In-memory images cannot be sent to a cluster:
    save them as files.
    ``concurrency``: actors in the pool (default: one per CPU Ray has, or per GPU with ``num_gpus``).
    ``num_gpus``: GPUs per actor (default 1 when the Ray cluster has GPUs, else 0).
    ``model_source``: what each actor passes to :func:`clipviz.load` (default ``model.name``); the
    actors' weights are checked against the model in hand before any work starts.
    ``resume``: rerunning into a folder this model and these inputs already started completes it;
    ``resume=False`` refuses any non-empty folder.
    Ray must be running (``ray.init(...)``) or it is started locally with Ray's defaults.
    """
    try:
        import ray
        import ray.data
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError('engine="ray" needs Ray Data and pyarrow: pip install "clipviz[scale]"') from error
    if output is None:
        raise ValueError('engine="ray" writes Parquet shards: pass output=<folder> (empty, or one to resume)')
    if thumbnail_size:
        raise ValueError("thumbnail_size: the Ray engine stores no thumbnails; pass thumbnail_size=0 "
                         "(the map shows sources instead)")
    if batch_size < 1 or text_batch_size < 1:
        raise ValueError("batch sizes must be at least 1")
    output = writable_directory(output, "output")
    rows = _input_rows(images, texts, labels)
    if not len(rows["row_id"]):
        raise ValueError("nothing to embed: pass images= and/or texts=")

    metadata = _metadata(model, rows)
    done = _prepare_output(output, metadata, resume)
    if metadata["status"] == "complete":
        return _embeddings.Embeddings.open(output)
    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True)
    _check_workers_load_the_same_model(ray, model, model_source, metadata["weights_fingerprint"])

    todo = np.flatnonzero(~np.isin(rows["row_id"], np.fromiter(done, np.int64, len(done))))
    if len(todo):
        gpus = float(ray.cluster_resources().get("GPU", 0))
        if num_gpus is None:
            num_gpus = 1 if gpus >= 1 else 0
        if concurrency is None:
            per_actor = num_gpus if num_gpus else 1
            available = gpus if num_gpus else float(ray.cluster_resources().get("CPU", 1))
            concurrency = max(1, int(available // per_actor))
        context = ray.data.DataContext.get_current()
        if progress is not None:
            context.enable_progress_bars = bool(progress)
        actors = concurrency if isinstance(concurrency, int) else max(concurrency)
        # Ray Data deprecated map_batches(concurrency=) in favour of an explicit compute strategy
        pool = (ray.data.ActorPoolStrategy(size=concurrency) if isinstance(concurrency, int)
                else ray.data.ActorPoolStrategy(min_size=min(concurrency), max_size=max(concurrency)))
        # enough blocks for every actor to have work, none bigger than a few batches
        block = max(batch_size, min(_BLOCK_BATCHES * batch_size, -(-len(todo) // (2 * actors))))
        blocks = [_arrow_slice(rows, todo[i : i + block]) for i in range(0, len(todo), block)]
        dataset = ray.data.from_arrow(blocks).map_batches(
            _EmbedActor, batch_size=batch_size, batch_format="pyarrow", compute=pool,
            num_gpus=num_gpus or None,
            fn_constructor_kwargs={"source": model_source or model.name, "name": model.name,
                                   "dtype": str(model.dtype).removeprefix("torch."),
                                   "device": "cuda" if num_gpus else "cpu", "text_batch_size": text_batch_size},
        )
        # file names carry a per-run write id. Writing a shard is I/O: its tasks ask for no CPU, else
        # an actor pool that holds every CPU starves them and no shard is written until it stops
        dataset.write_parquet(str(output / SHARDS_DIR), ray_remote_args={"num_cpus": 0})

    _finish(output, metadata)
    return _embeddings.Embeddings.open(output)


# ---------------------------------------------------------------------------------- inputs
def _input_rows(images, texts, labels) -> dict:
    """The driver's only state: row id, modality, source and label per input (no pixels, no vectors)."""
    parquet_texts, parquet_labels = [], None
    if isinstance(images, (str, os.PathLike)) and str(images).endswith(".parquet") and Path(images).is_file():
        import pyarrow.parquet as pq

        table = pq.read_table(images)
        if "path" not in table.column_names:
            raise ValueError(f"images={str(images)!r}: a Parquet of inputs needs a 'path' column "
                             f"(found {table.column_names}); 'text' and 'label' columns are optional")
        paths = [str(p) for p in table.column("path").to_pylist()]
        if "text" in table.column_names:
            parquet_texts = [t for t in table.column("text").to_pylist() if t]
        if "label" in table.column_names and labels is None:
            parquet_labels = table.column("label").to_pylist()
        images = paths
        if parquet_labels is not None and parquet_texts:
            parquet_labels = parquet_labels + [None] * len(parquet_texts)
    image_sources, folder_labels = _embeddings._image_sources(images)
    not_files = [s for s in image_sources if not isinstance(s, (str, os.PathLike))]
    if not_files:
        raise TypeError(f'engine="ray" reads images from files; got {type(not_files[0]).__name__} objects: '
                        "save them as image files (or use engine='local')")
    text_list = _embeddings._text_list(texts) + parquet_texts
    image_labels, text_labels = _embeddings._split_labels(
        labels if labels is not None else parquet_labels, len(image_sources), len(text_list), folder_labels)
    n_images, n = len(image_sources), len(image_sources) + len(text_list)
    return {
        "row_id": np.arange(n, dtype=np.int64),
        "modality": np.array(["image"] * n_images + ["text"] * len(text_list), dtype=object),
        "source": np.array([str(Path(s).expanduser().absolute()) for s in image_sources] + text_list, dtype=object),
        "label": np.array([None if x is None else str(x) for x in list(image_labels) + list(text_labels)],
                          dtype=object),
    }


def _arrow_slice(rows: dict, positions: np.ndarray):
    import pyarrow as pa

    return pa.table({
        "row_id": pa.array(rows["row_id"][positions]),
        "modality": pa.array(rows["modality"][positions].tolist(), pa.string()),
        "source": pa.array(rows["source"][positions].tolist(), pa.string()),
        "label": pa.array(rows["label"][positions].tolist(), pa.string()),
    })


# ---------------------------------------------------------------------------------- metadata and resume
def _metadata(model, rows: dict) -> dict:
    return {
        "layout": LAYOUT,
        "model_name": getattr(model, "name", ""),
        "family": getattr(model, "family", ""),
        "processor_settings": _embeddings._processor_settings(model),
        "tokenizer_settings": _embeddings._tokenizer_settings(model),
        "weights_fingerprint": _embeddings.model_fingerprint(model),
        "dim": _embeddings._output_dim(model),
        "clipviz_version": __version__,
        "inputs_sha256": _embeddings._hash(*rows["modality"], *rows["source"], *rows["label"]),
        "inputs": len(rows["row_id"]),
        "images": int((rows["modality"] == "image").sum()),
        "rows": None,
        "failures": None,
        "status": "running",
    }


def _prepare_output(output: Path, metadata: dict, resume: bool) -> set:
    """Row ids already embedded in ``output`` by this model for these inputs; refuses anything else."""
    existing = read_metadata(output)
    if existing is None:
        leftovers = [p.name for p in output.iterdir() if not p.name.startswith(".")]
        if leftovers:
            raise FileExistsError(f"output={str(output)!r} is not empty and holds no clipviz embedding run "
                                  f"({', '.join(sorted(leftovers)[:3])}...): pass an empty or new folder")
        atomic_write_bytes(output / METADATA_FILE, json.dumps(metadata, indent=1).encode())
        return set()
    for key, what in (("weights_fingerprint", "another model"), ("processor_settings", "other processor settings"),
                      ("inputs_sha256", "other inputs")):
        if existing.get(key) != metadata[key]:
            raise FileExistsError(
                f"output={str(output)!r} holds embeddings of {what} (model {existing.get('model_name')!r}, "
                f"{existing.get('inputs')} inputs) than this run (model {metadata['model_name']!r}, "
                f"{metadata['inputs']} inputs); one folder never mixes them: pass a new folder")
    if not resume:
        raise FileExistsError(f"output={str(output)!r} already holds this run ({existing.get('status')}): "
                              "pass resume=True to complete or reopen it, or a new folder")
    if existing.get("status") == "complete":
        metadata.update(existing)
        return set(range(metadata["inputs"]))
    return _rows_done(output)


def _rows_done(output: Path) -> set:
    """Row ids in readable shards; a shard a crash left unreadable is removed (its rows are redone)."""
    import pyarrow.parquet as pq

    done: set = set()
    for shard in sorted((output / SHARDS_DIR).glob("*.parquet")):
        try:
            ids = pq.read_table(shard, columns=["row_id"]).column("row_id").to_numpy()
        except Exception:  # noqa: BLE001 - any damage means the shard does not count
            shard.unlink()
            continue
        done.update(int(i) for i in ids)
    return done


def _finish(output: Path, metadata: dict) -> None:
    """Count rows, write the failures file from the shards' ``error`` column, mark the run complete."""
    import pyarrow.parquet as pq

    ids, failures = [], []
    for shard in sorted((output / SHARDS_DIR).glob("*.parquet")):
        table = pq.read_table(shard, columns=["row_id", "source", "error"])
        ids.append(table.column("row_id").to_numpy())
        errors = table.column("error").to_pylist()
        sources = table.column("source").to_pylist()
        failures += [{"row_id": int(r), "source": s, "reason": e}
                     for r, s, e in zip(ids[-1], sources, errors) if e is not None]
    ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    unique = np.unique(ids)
    if len(unique) != len(ids) or len(unique) != metadata["inputs"]:
        raise RuntimeError(f"the shards in {output} hold {len(ids)} rows ({len(unique)} distinct) for "
                           f"{metadata['inputs']} inputs; rerun with the same arguments to complete it")
    failures.sort(key=lambda f: f["row_id"])
    atomic_write_bytes(output / FAILURES_FILE, "".join(json.dumps(f) + "\n" for f in failures).encode())
    metadata.update(rows=int(len(ids) - len(failures)), failures=len(failures), status="complete",
                    finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    atomic_write_bytes(output / METADATA_FILE, json.dumps(metadata, indent=1).encode())


def _check_workers_load_the_same_model(ray, model, source, fingerprint: str) -> None:
    """Load ``source`` as the actors will and compare weights: edits made in memory would otherwise be lost.

    Loaded here in the driver when it can (no extra worker process to start); on a cluster whose
    workers see paths the driver does not, once in a Ray task instead.
    """
    source = source or model.name
    dtype = str(model.dtype).removeprefix("torch.")

    def loaded_fingerprint(source, name, dtype):
        import clipviz
        from clipviz.embeddings import model_fingerprint

        loaded = clipviz.load(source, device="cpu", dtype=dtype)
        loaded.name = name
        return model_fingerprint(loaded)

    try:
        got = loaded_fingerprint(source, model.name, dtype)
    except (OSError, ValueError):
        got = ray.get(ray.remote(num_cpus=0)(loaded_fingerprint).remote(source, model.name, dtype))
    if got != fingerprint:
        raise ValueError(
            f"model: the Ray workers load clipviz.load({source!r}), whose weights differ from the model in hand "
            "(edited in memory?). save_pretrained the model and its processor to a folder every worker can "
            "read and pass model_source=<that folder>")


# ---------------------------------------------------------------------------------- the actor
class _EmbedActor:
    """One per Ray actor: loads the model once, then embeds a batch of rows per call."""

    def __init__(self, source, name, dtype, device, text_batch_size):
        import clipviz

        self.model = clipviz.load(source, device=device, dtype=dtype)
        self.model.name = name
        self.dim = _embeddings._output_dim(self.model)
        self.text_batch_size = text_batch_size

    def __call__(self, batch):
        import pyarrow as pa
        from ray.data.extensions import ArrowTensorArray

        modality = batch.column("modality").to_pylist()
        sources = batch.column("source").to_pylist()
        vectors = np.zeros((len(sources), self.dim), np.float32)
        errors: list = [None] * len(sources)
        images = [i for i, m in enumerate(modality) if m == "image"]
        texts = [i for i, m in enumerate(modality) if m == "text"]
        if images:
            result = self._images([sources[i] for i in images])
            bad = {position: reason for position, reason in result.skipped}
            ok = [i for p, i in enumerate(images) if p not in bad]
            vectors[ok] = result.vectors
            for position, reason in bad.items():
                errors[images[position]] = reason
        for start in range(0, len(texts), self.text_batch_size):
            chunk = texts[start : start + self.text_batch_size]
            vectors[chunk] = _embeddings._embed_text_batch(self.model, [sources[i] for i in chunk]).vectors
        return pa.table({
            "row_id": batch.column("row_id"),
            "modality": batch.column("modality"),
            "source": batch.column("source"),
            "label": batch.column("label"),
            "embedding": ArrowTensorArray.from_numpy(vectors),
            "error": pa.array(errors, pa.string()),
        })

    def _images(self, paths):
        import torch

        pixels, _, skipped = _embeddings._prepare_image_batch(self.model, paths, 0)
        if pixels is None:
            return _embeddings.BatchResult(np.zeros((0, self.dim), np.float32), None, skipped)
        with torch.no_grad():
            out = self.model.image_features(pixels.to(device=self.model.device, dtype=self.model.dtype))
        return _embeddings.BatchResult(out.float().cpu().numpy(), None, skipped)
