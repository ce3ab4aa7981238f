"""Scale: Ray Data embedding against single-process ``embed``, driver memory on Ray, search over 1M vectors.

1. ``throughput``: the same image files embedded by ``clipviz.embed(model, images=folder)`` (the
   baseline, one process, measured in the same run) and by ``clipviz.embed(..., engine="ray")`` on a
   local Ray with ``--cpus`` CPUs (actor start-up included, ``ray.init`` not). Target: Ray / single
   ≥ 0.8 (what this measures is Ray's overhead; on a cluster the gain is the worker count).
   ``--model vit-b-32`` (the default) is CLIP ViT-B/32's architecture with random weights, the
   workload a collection is embedded with (~16 images/s on 2 cores); ``--model shapes-clip`` embeds
   at several hundred images/s, so there the run measures little but Ray's fixed start-up cost.
2. ``memory``: the driver's resident memory while ``--images`` files go through Ray with a tiny
   model (sampled every 50 ms; growth = peak - before the call). Target ≤ 300 MB: the driver streams,
   it never collects vectors.
3. ``search``: ``Embeddings.search`` over ``--vectors`` memory-mapped 512-d float16 unit vectors (a
   clip-retrieval folder); median seconds per query over ``--queries`` queries, and recall@10
   against an exact float32 search over the same vectors before rounding to float16. Targets:
   median ≤ 1 s, recall@10 = 1.0.

    PYTHONPATH=. python benchmarks/bench_scale.py throughput [--images 2000] [--model vit-b-32|shapes-clip] [--cpus 2]
    python benchmarks/bench_scale.py memory [--images 50000]
    python benchmarks/bench_scale.py search [--vectors 1000000] [--queries 20]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]  # the Ray workers' PYTHONPATH: this checkout's clipviz


def write_shapes(folder: Path, n: int) -> Path:
    from clipviz.data import shapes

    folder.mkdir(parents=True, exist_ok=True)
    for start in range(0, n, 1000):
        for i, scene in enumerate(shapes.sample(min(1000, n - start), seed=start + 7)):
            scene.image.save(folder / f"{start + i:06d}.png")
    return folder


def start_ray(cpus: int):
    from clipviz.testing import start_local_ray

    return start_local_ray(cpus, object_store_memory=512 * 2**20, pythonpath=ROOT, attempts=3)


def load_model(name: str, directory: Path):
    """A bundled model by name, or ``vit-b-32``: CLIP ViT-B/32's architecture with random weights."""
    import clipviz

    if name != "vit-b-32":
        return clipviz.load(name)
    from clipviz.testing import TEXT_B, VIT_B32, random_checkpoint

    return clipviz.load(random_checkpoint(directory, "clip", vision=VIT_B32, text=dict(TEXT_B, max_position_embeddings=77),
                                          projection_dim=512, context=77, logit_scale=None))


def bench_throughput(args) -> None:
    import clipviz

    with tempfile.TemporaryDirectory() as tmp:
        model = load_model(args.model, Path(tmp) / "model")
        folder = write_shapes(Path(tmp) / "images", args.images)
        clipviz.embed(model, images=sorted(folder.iterdir())[:64], thumbnail_size=0, progress=False)  # warm-up
        start = time.perf_counter()
        single = clipviz.embed(model, images=folder, batch_size=args.batch_size, thumbnail_size=0, progress=False)
        single_s = time.perf_counter() - start
        ray = start_ray(args.cpus)
        try:
            start = time.perf_counter()
            on_ray = clipviz.embed(model, images=folder, engine="ray", output=Path(tmp) / "out",
                                   batch_size=args.batch_size, thumbnail_size=0, concurrency=args.cpus)
            ray_s = time.perf_counter() - start
        finally:
            ray.shutdown()
        worst = float(np.abs(np.asarray(on_ray.vectors) - np.asarray(single.vectors)).max())
    print(f"model {args.model}, {args.images} PNG files, batch {args.batch_size}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"single-process embed: {single_s:.1f} s = {args.images / single_s:.1f} images/s")
    print(f"Ray Data ({args.cpus} actors): {ray_s:.1f} s = {args.images / ray_s:.1f} images/s")
    print(f"ratio Ray / single: {single_s / ray_s:.2f} (target >= 0.8); max |difference| {worst:.1e}")


def bench_memory(args) -> None:
    import psutil

    import clipviz
    from clipviz.testing import random_checkpoint

    process = psutil.Process()
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_shapes(Path(tmp) / "images", args.images)
        model = clipviz.load(random_checkpoint(Path(tmp) / "tiny", "clip"))
        ray = start_ray(args.cpus)
        peak, stop = [0], threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.05)

        try:
            before = process.memory_info().rss
            thread = threading.Thread(target=sample, daemon=True)
            thread.start()
            start = time.perf_counter()
            emb = clipviz.embed(model, images=folder, engine="ray", output=Path(tmp) / "out", batch_size=512,
                                thumbnail_size=0, concurrency=args.cpus)
            seconds = time.perf_counter() - start
            stop.set()
            thread.join()
        finally:
            ray.shutdown()
        print(f"{args.images} images through Ray in {seconds:.0f} s ({len(emb)} rows, memory-mapped); "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"driver RSS before {before / 2**20:.0f} MB, peak {peak[0] / 2**20:.0f} MB, "
              f"growth {(peak[0] - before) / 2**20:.0f} MB (target <= 300 MB)")


def bench_search(args) -> None:
    from clipviz.embeddings import Embeddings
    from clipviz.search import top_k

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "collection"
        (root / "img_emb").mkdir(parents=True)
        half = np.lib.format.open_memmap(root / "img_emb" / "img_emb_0.npy", mode="w+", dtype=np.float16,
                                         shape=(args.vectors, args.dim))
        full = np.lib.format.open_memmap(Path(tmp) / "float32.npy", mode="w+", dtype=np.float32,
                                         shape=(args.vectors, args.dim))
        for start in range(0, args.vectors, 100_000):
            block = rng.standard_normal((min(100_000, args.vectors - start), args.dim)).astype(np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            full[start : start + len(block)] = block
            half[start : start + len(block)] = block
        half.flush()
        full.flush()
        del half
        emb = Embeddings.open(root)
        assert isinstance(emb.vectors, np.memmap) and emb.vectors.dtype == np.float16
        # queries near stored vectors, as real queries are (a near-duplicate, a caption of an image)
        targets = rng.choice(args.vectors, args.queries, replace=False)
        queries = np.asarray(full[targets]) + 0.7 * rng.standard_normal((args.queries, args.dim)) / np.sqrt(args.dim)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        times, recalls = [], []
        for query in queries:
            start = time.perf_counter()
            hits = emb.search(query.astype(np.float32), k=10)
            times.append(time.perf_counter() - start)
            exact, _ = top_k(full, query.astype(np.float32), 10)
            recalls.append(len(set(hits.rows.tolist()) & set(exact.tolist())) / 10)
        print(f"{args.vectors} x {args.dim} float16 vectors, memory-mapped ({emb.vectors.nbytes / 2**30:.2f} GiB), "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"search: median {np.median(times):.3f} s per query, max {max(times):.3f} s (target <= 1 s); "
              f"recall@10 vs float32 exact: mean {np.mean(recalls):.3f}, min {min(recalls):.2f} (target 1.0)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="which", required=True)
    p = sub.add_parser("throughput")
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--model", default="vit-b-32", help="vit-b-32 (random weights) or a bundled model name")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--cpus", type=int, default=2)
    p = sub.add_parser("memory")
    p.add_argument("--images", type=int, default=50_000)
    p.add_argument("--cpus", type=int, default=2)
    p = sub.add_parser("search")
    p.add_argument("--vectors", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--queries", type=int, default=20)
    args = parser.parse_args()
    {"throughput": bench_throughput, "memory": bench_memory, "search": bench_search}[args.which](args)


if __name__ == "__main__":
    main()
