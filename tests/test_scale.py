"""clipviz.embed(engine="ray"): Ray Data on a local 2-CPU Ray, its faults, and reading plain Ray output.

One module-scoped local Ray (2 CPUs, no dashboard, a small object store), shut down at the end.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import clipviz
from clipviz.data import shapes
from clipviz.embeddings import Embeddings
from clipviz.testing import start_local_ray

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pq = pytest.importorskip("pyarrow.parquet")
psutil = pytest.importorskip("psutil")

ROOT = Path(__file__).resolve().parents[1]
N_IMAGES = int(os.environ.get("CLIPVIZ_SCALE_TEST_IMAGES", "2000"))  # a few thousand in CI


@pytest.fixture(scope="module")
def local_ray():
    # Workers import this checkout's clipviz, not whichever one the environment has installed.
    yield start_local_ray(2, object_store_memory=256 * 2**20, pythonpath=ROOT)
    ray.shutdown()


@pytest.fixture(scope="module")
def model(tiny_models):
    # A private copy, loaded as the Ray workers load it: the engine refuses a model whose weights differ
    # from its source folder, and the session's shared models are other tests' to use.
    return clipviz.load(tiny_models["clip"])


@pytest.fixture(scope="module")
def shape_files(tmp_path_factory):
    """2,000 shapes-world PNGs in two class folders, one corrupt file among them, and 40 captions."""
    root = tmp_path_factory.mktemp("shapes")
    scenes = shapes.sample(N_IMAGES, seed=3)
    for i, scene in enumerate(scenes):
        folder = root / scene.objects[0].shape
        folder.mkdir(exist_ok=True)
        scene.image.save(folder / f"{i:05d}.png")
    (root / "circle" / "00000_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    texts = sorted({s.caption() for s in scenes})[:40]
    return root, texts


@pytest.fixture(scope="module")
def reference(model, shape_files):
    root, texts = shape_files
    with pytest.warns(UserWarning, match=f"1 of {N_IMAGES + 1} images"):
        return clipviz.embed(model, images=root, texts=texts, thumbnail_size=0, progress=False)


@pytest.fixture(scope="module")
def ray_run(local_ray, model, shape_files, tmp_path_factory):
    root, texts = shape_files
    out = tmp_path_factory.mktemp("ray") / "out"
    return out, clipviz.embed(model, images=root, texts=texts, engine="ray", output=out, batch_size=64,
                              thumbnail_size=0, progress=False, concurrency=2)


def _row_ids(out: Path) -> np.ndarray:
    return np.concatenate([pq.read_table(f, columns=["row_id"]).column("row_id").to_numpy()
                           for f in sorted((out / "shards").glob("*.parquet"))])


def test_ray_output_equals_single_process_embed_row_by_row(ray_run, reference, model):
    out, emb = ray_run
    assert isinstance(emb.vectors, np.memmap)
    assert len(emb) == len(reference) == N_IMAGES + 40
    assert list(emb.modality) == list(reference.modality)
    assert emb.sources[:N_IMAGES] == [str(Path(s).absolute()) for s in reference.sources[:N_IMAGES]]
    assert emb.sources[N_IMAGES:] == reference.sources[N_IMAGES:]
    assert list(emb.labels) == list(reference.labels) and list(emb.index) == list(reference.index)
    np.testing.assert_allclose(np.asarray(emb.vectors), np.asarray(reference.vectors), atol=1e-5, rtol=0)
    # every input exactly once, the unreadable one in the failures file with its reason
    ids = _row_ids(out)
    assert sorted(ids.tolist()) == list(range(N_IMAGES + 41))
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [Path(f["source"]).name for f in failures] == ["00000_broken.png"] and failures[0]["reason"]
    assert [Path(s).name for s, _ in emb.skipped] == ["00000_broken.png"]
    meta = json.loads((out / "clipviz-embeddings.json").read_text())
    assert meta["status"] == "complete" and meta["rows"] == N_IMAGES + 40 and meta["failures"] == 1
    assert meta["model_name"] == model.name and meta["family"] == "clip" and meta["dim"] == emb.dim
    assert meta["weights_fingerprint"] == emb.fingerprint == clipviz.embeddings.model_fingerprint(model)
    assert meta["clipviz_version"] == clipviz.__version__ and "crop_size" in meta["processor_settings"]
    # the shards store the vectors as Ray's tensor type (an Arrow extension type: pyarrow with Ray
    # imported reads it back as that type, plain pyarrow as its storage, a list column)
    field = pq.read_schema(next((out / "shards").glob("*.parquet"))).field("embedding")
    assert field.type.extension_name.startswith("ray.data.arrow_tensor"), field.type
    # search: a caption finds images of its shape
    hits = emb.search(reference.sources[N_IMAGES], k=5, model=model)
    assert hits.modality == ["image"] * 5


def test_rerun_reopens_resumes_or_refuses(ray_run, model, tiny_hooked, shape_files, local_ray):
    out, emb = ray_run
    root, texts = shape_files
    again = clipviz.embed(model, images=root, texts=texts, engine="ray", output=out, thumbnail_size=0)
    np.testing.assert_array_equal(np.asarray(again.vectors), np.asarray(emb.vectors))
    with pytest.raises(FileExistsError, match="another model .* never mixes"):
        clipviz.embed(tiny_hooked["altclip"], images=root, texts=texts, engine="ray", output=out, thumbnail_size=0)
    with pytest.raises(FileExistsError, match="other inputs"):
        clipviz.embed(model, images=root, texts=texts[:3], engine="ray", output=out, thumbnail_size=0)
    with pytest.raises(FileExistsError, match="not empty"):
        clipviz.embed(model, texts=texts, engine="ray", output=root, thumbnail_size=0)
    with pytest.raises(ValueError, match="cache= is for engine='local'"):
        clipviz.embed(model, texts=texts, engine="ray", output=out, cache=out)


def test_interrupted_run_resumes_with_every_row_once(ray_run, model, shape_files, tmp_path):
    out, emb = ray_run
    root, texts = shape_files
    import shutil

    copy = tmp_path / "partial"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns(".clipviz-cache"))
    shards = sorted((copy / "shards").glob("*.parquet"))
    for shard in shards[: len(shards) // 2]:
        shard.unlink()  # as if the run had died half-way
    shards[-1].write_bytes(shards[-1].read_bytes()[:100])  # and one shard half-written
    meta = json.loads((copy / "clipviz-embeddings.json").read_text())
    meta["status"] = "running"
    (copy / "clipviz-embeddings.json").write_text(json.dumps(meta))
    resumed = clipviz.embed(model, images=root, texts=texts, engine="ray", output=copy, thumbnail_size=0)
    assert sorted(_row_ids(copy).tolist()) == list(range(N_IMAGES + 41))
    np.testing.assert_array_equal(np.asarray(resumed.vectors), np.asarray(emb.vectors))


def test_a_killed_worker_is_retried_and_every_input_lands_once(local_ray, model, shape_files, reference, tmp_path):
    root, texts = shape_files
    out = tmp_path / "killed"
    result, errors = {}, []

    def run():
        try:
            result["emb"] = clipviz.embed(model, images=root, texts=texts, engine="ray", output=out,
                                          batch_size=32, thumbnail_size=0, concurrency=2)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    killed = None
    deadline = time.monotonic() + 300  # actor start-up on a loaded 2-core machine
    while killed is None and thread.is_alive() and time.monotonic() < deadline:
        # an actor in the middle of a batch: Ray titles its process "...MapWorker(MapBatches(_EmbedActor)).submit"
        # while the call runs (shards alone are no signal: Ray Data may write them all at the end)
        titles = {p.pid: " ".join(p.info["cmdline"] or []).strip() for p in psutil.process_iter(["pid", "cmdline"])}
        busy = [pid for pid, title in titles.items() if "EmbedActor" in title and title.endswith(".submit")]
        if busy:
            time.sleep(0.5)  # well inside its first batch
            killed = busy[0]
            os.kill(killed, 9)
        time.sleep(0.05)
    assert killed is not None, f"no actor process was found mid-run (the run: {errors or 'still going'})"
    assert thread.is_alive(), "the run had finished before the kill: it proves nothing"
    thread.join(timeout=300)
    assert not errors, errors
    ids = _row_ids(out)
    assert len(ids) == len(np.unique(ids)) == N_IMAGES + 41  # every input exactly once
    np.testing.assert_allclose(np.asarray(result["emb"].vectors), np.asarray(reference.vectors), atol=1e-5, rtol=0)
    assert not psutil.pid_exists(killed) or psutil.Process(killed).status() == psutil.STATUS_ZOMBIE


def test_a_parquet_written_by_plain_ray_opens(local_ray, tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 12)).astype(np.float32)
    rows = [{"path": f"img_{i}.jpg", "label": "ab"[i % 2]} for i in range(300)]
    dataset = ray.data.from_items(rows).map_batches(
        lambda b: {**b, "embedding": vectors[[int(p[4:-4]) for p in b["path"]]]}, batch_format="numpy")
    dataset.write_parquet(str(tmp_path / "plain"))
    emb = Embeddings.open(tmp_path / "plain")
    assert len(emb) == 300 and emb.dim == 12 and isinstance(emb.vectors, np.memmap)
    order = [int(s[4:-4]) for s in emb.sources]  # Ray may write blocks in any order
    np.testing.assert_allclose(np.asarray(emb.vectors), vectors[order], rtol=1e-6)
    assert [emb.labels[i] for i in range(3)] == ["ab"[order[i] % 2] for i in range(3)]
    hits = emb.search(vectors[7], k=1)
    assert emb.sources[hits.rows[0]] == "img_7.jpg"
