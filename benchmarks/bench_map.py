"""The interactive map: first picture, 100k layout, memory. Each figure a ratio measured in one run.

1. first picture — fresh Python process, ``NUMBA_CACHE_DIR`` a new empty folder for each side:
   clipviz: import clipviz, build ``EmbeddingApp`` (PCA shown; UMAP started in its child process) for
   1,000 image + 100 text vectors (512-d) / plain ``umap.UMAP(metric="cosine").fit_transform`` of the
   same vectors. Wall clock around each subprocess, interpreter start included.
2. 100,000 points (128-d, 100 classes, a modality gap) — time to the final layout:
   ``JointUMAP(random_state=0)`` (UMAP on a 10,000 sample, the rest placed by exact weighted kNN) /
   plain ``umap.UMAP(metric="cosine")`` on all points, both in one process after a small warm-up fit
   (numba compiled for both); trustworthiness (k = 10, cosine) of each on the same 5,000-point subsample.
3. memory: resident set of a fresh process holding an ``EmbeddingApp`` over 100,000 image vectors
   (512-d float32) after a preview was made for every point (worst case: all hovered), minus the
   process before the data existed.
4. in the browser at 100,000 points (``benchmarks/bench_map_browser.py``): hover → thumbnail visible
   (median) against one bare kernel round trip, and a lasso of ~10,000 points → the kernel's
   ``on_select``.
5. ``million``: 1,000,000 points (32-d vectors, PCA layout) drawn in the browser: the share of the
   canvas covered and the time from running the cell to the points on screen.

    python benchmarks/bench_map.py [--part first|large|memory|browser|million]
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_first_map import make_data  # noqa: E402

BASELINE = """
import sys, numpy as np, umap
X = np.load(sys.argv[1])
Y = umap.UMAP(metric="cosine").fit_transform(X)
"""

FIRST_PICTURE = """
import sys, time, numpy as np
X = np.load(sys.argv[1])
from clipviz.embeddings import Embeddings
from clipviz.widgets import EmbeddingApp
app = EmbeddingApp(Embeddings.from_arrays(X[:1000], X[1000:]), method="umap")
assert app.layout_method == "pca" and app.coords.shape == (1100, 2)
print("FIRST", time.perf_counter(), flush=True)
app.close()  # cancels the background UMAP: only the first picture is timed
"""

MEMORY = """
import resource, sys, tempfile, numpy as np
def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024
from PIL import Image
from clipviz.embeddings import Embeddings
from clipviz.widgets import EmbeddingApp
before = rss_mb()
rng = np.random.default_rng(0)
X = rng.standard_normal((100_000, 512), dtype=np.float32)  # no float64 copy on the way
app = EmbeddingApp(Embeddings.from_arrays(X), method="pca")
del X
folder = tempfile.mkdtemp()
files = []
for i in range(64):  # random noise: the worst case for JPEG, so the largest previews
    files.append(f"{folder}/{i}.png")
    Image.fromarray(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)).save(files[-1])
app.embeddings.inputs = [files[row % 64] for row in range(100_000)]  # a collection's list of paths
for row in range(100_000):  # every point hovered once, through the app's own preview path
    app.previews.url(row)
after = rss_mb()
print("MEMORY", after - before, app.previews.nbytes() / 2**20, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before)
"""


def _env(cache: Path) -> dict:
    return dict(os.environ, NUMBA_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore",
                HF_HUB_OFFLINE="1")


def first_picture() -> dict:
    X, _ = make_data()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        np.save(folder / "X.npy", X)
        (folder / "clipviz_cache").mkdir()
        (folder / "umap_cache").mkdir()
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", FIRST_PICTURE, str(folder / "X.npy")], env=_env(folder / "clipviz_cache"),
                             check=True, capture_output=True, text=True, cwd=ROOT)
        clipviz_s = time.perf_counter() - start  # process start → app built (includes its exit)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", BASELINE, str(folder / "X.npy")], env=_env(folder / "umap_cache"),
                       check=True, cwd=ROOT)
        umap_s = time.perf_counter() - start
    assert "FIRST" in out.stdout
    return {"clipviz_first_picture_s": clipviz_s, "umap_fit_s": umap_s, "ratio": clipviz_s / umap_s}


def large(n: int = 100_000) -> dict:
    import umap
    from sklearn.manifold import trustworthiness

    from clipviz.projection import JointUMAP

    X, labels = make_data(n_images=n - 1000, n_texts=1000, dim=512, n_classes=100)
    is_image = np.arange(n) < n - 1000
    warm = X[:: n // 2000]
    umap.UMAP(metric="cosine").fit_transform(warm)  # compile both sides' kernels before timing
    JointUMAP(random_state=0, sample_size=1000).fit((warm[:1500], warm[1500:]))
    start = time.perf_counter()
    layout = JointUMAP(random_state=0).fit((X[is_image], X[~is_image]))
    clipviz_s = time.perf_counter() - start
    start = time.perf_counter()
    plain = umap.UMAP(metric="cosine").fit_transform(X)
    umap_s = time.perf_counter() - start
    sub = np.random.default_rng(1).choice(n, 5000, replace=False)
    t_clipviz = trustworthiness(X[sub], layout.embedding_[sub], n_neighbors=10, metric="cosine")
    t_umap = trustworthiness(X[sub], plain[sub], n_neighbors=10, metric="cosine")
    return {"clipviz_s": clipviz_s, "umap_s": umap_s, "ratio": clipviz_s / umap_s, "method": layout.method_,
            "trust_clipviz": float(t_clipviz), "trust_umap": float(t_umap), "trust_diff": float(t_clipviz - t_umap)}


def memory() -> dict:
    out = subprocess.run([sys.executable, "-c", MEMORY], env=_env(Path(tempfile.mkdtemp())), check=True,
                         capture_output=True, text=True, cwd=ROOT)
    line = [x for x in out.stdout.splitlines() if x.startswith("MEMORY")][0].split()
    return {"rss_growth_mb": float(line[1]), "previews_mb": float(line[2]), "peak_growth_mb": float(line[3])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["first", "large", "memory", "browser", "million", "all"], default="all")
    args = parser.parse_args()
    from bench_map_browser import browser

    parts = {"first": first_picture, "large": large, "memory": memory, "browser": browser,
             "million": lambda: browser(1_000_000, interact=False)}
    for name, function in parts.items():
        if args.part in (name, "all"):
            print(name, json.dumps(function(), indent=1), flush=True)


if __name__ == "__main__":
    main()
