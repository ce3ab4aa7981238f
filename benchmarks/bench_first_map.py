"""The fast first map: fresh Python process → finished plot of 1,000 image + 100 text embeddings.

Baseline, measured in the same run: a fresh process running plain ``umap.UMAP(metric="cosine").fit_transform``
on the same data (no plot). clipviz: a fresh process that imports clipviz, runs ``JointUMAP().fit_transform``
and saves the plot to a PNG. Times are wall clock around each subprocess (interpreter start included).

Two regimes, each with its own empty ``NUMBA_CACHE_DIR`` per contender:
  cold — the very first run on a machine (every on-disk numba cache empty, for both);
  warm — a later kernel (each contender's own cache filled by its cold run: pynndescent's kernels for
         umap-learn alone; umap-learn's kernels too for clipviz, which switches their disk cache on).
Neighbourhood quality: sklearn.manifold.trustworthiness (k=15, cosine) of each map against the data.

    python benchmarks/bench_first_map.py [--ablation] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

BASELINE = """
import sys, numpy as np, umap
X = np.load(sys.argv[1])
Y = umap.UMAP(metric="cosine").fit_transform(X)
np.save(sys.argv[2], Y)
"""

CLIPVIZ = """
import sys, json, numpy as np
import matplotlib
matplotlib.use("Agg")
from clipviz.embeddings import Embeddings
from clipviz.projection import JointUMAP
X = np.load(sys.argv[1])
options = json.loads(sys.argv[4])
embeddings = Embeddings.from_arrays(X[:1000], X[1000:], image_labels=np.load(sys.argv[5])[:1000],
                                    text_labels=np.load(sys.argv[5])[1000:])
projection = JointUMAP(**options)
Y = projection.fit_transform(embeddings)
ax = projection.plot(color_by="label")
ax.figure.savefig(sys.argv[3], dpi=80)
np.save(sys.argv[2], Y)
"""


def make_data(seed: int = 0, n_images: int = 1000, n_texts: int = 100, dim: int = 512, n_classes: int = 30):
    """Unit vectors shaped like a CLIP space: class clusters, texts near their class, a modality gap."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim))
    gap = rng.normal(size=dim)
    gap *= 12.0 / np.linalg.norm(gap)
    image_labels = rng.integers(0, n_classes, n_images)
    text_labels = np.arange(n_texts) % n_classes
    images = centres[image_labels] + 0.9 * rng.normal(size=(n_images, dim)) + gap
    texts = centres[text_labels] + 0.9 * rng.normal(size=(n_texts, dim)) - gap
    X = np.vstack([images, texts])
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), np.concatenate([image_labels, text_labels])


def run(script: str, args: list[str], cache_dir: Path) -> float:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir), PYTHONPATH=str(ROOT), MPLBACKEND="Agg",
               PYTHONWARNINGS="ignore")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", script, *args], env=env, check=True, cwd=ROOT)
    return time.perf_counter() - start


def trust(X: np.ndarray, Y: np.ndarray) -> float:
    from sklearn.manifold import trustworthiness

    return float(trustworthiness(X, Y, n_neighbors=15, metric="cosine"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ablation", action="store_true",
                        help="also time clipviz with each speed-up turned off (cold)")
    parser.add_argument("--repeats", type=int, default=1, help="warm runs per contender (the median is reported)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        X, labels = make_data()
        np.save(tmp / "X.npy", X)
        np.save(tmp / "labels.npy", labels.astype(str))
        results = {}

        def contender(name, options=None, cache_name=None):
            cache = tmp / f"numba-{cache_name or name}"
            cache.mkdir(exist_ok=True)
            out = tmp / f"{name}.npy"
            if options is None:
                seconds = run(BASELINE, [str(tmp / "X.npy"), str(out)], cache)
            else:
                seconds = run(CLIPVIZ, [str(tmp / "X.npy"), str(out), str(tmp / f"{name}.png"), json.dumps(options),
                                        str(tmp / "labels.npy")], cache)
            return seconds, trust(X, np.load(out))

        for regime in ("cold", "warm"):
            repeats = 1 if regime == "cold" else args.repeats
            for name, options in (("umap-learn", None), ("clipviz", {})):
                runs = [contender(name, options) for _ in range(repeats)]
                seconds = float(np.median([s for s, _ in runs]))
                results[(regime, name)] = (seconds, runs[-1][1])
                print(f"{regime:5s} {name:11s} {seconds:7.1f} s   trustworthiness {runs[-1][1]:.4f}", flush=True)
        for regime in ("cold", "warm"):
            base, ours = results[(regime, "umap-learn")], results[(regime, "clipviz")]
            print(f"{regime}: clipviz/umap-learn time ratio {ours[0] / base[0]:.2f} "
                  f"(target ≤ 0.50), trustworthiness difference {ours[1] - base[1]:+.4f} (target ≥ -0.02)")

        if args.ablation:
            print("ablation (cold, each with one speed-up off):")
            for name, options in (
                ("no exact kNN", {"fast_knn": False}),
                ("no disk cache", {"disk_cache": False}),
                ("spectral init", {"init": "spectral"}),
                ("500 epochs", {"n_epochs": 500}),
            ):
                key = name.replace(" ", "-")
                seconds, quality = contender(key, options)
                print(f"  {name:14s} {seconds:7.1f} s   trustworthiness {quality:.4f}", flush=True)
                if name == "no disk cache":  # a second fresh process: what the disk cache saves
                    seconds, quality = contender(key, options, cache_name=key)
                    print(f"  {name + ' (2nd)':14s} {seconds:7.1f} s   trustworthiness {quality:.4f}", flush=True)


if __name__ == "__main__":
    main()
