"""Any resolution: what the whole-image mode costs, and what it finds.

1. Cost: a Chefer relevance map (all layers, with the text tower's token relevance) for a
   ViT-B/16-sized random CLIP (12 layers × 12 heads, width 768) on a 640 × 480 photo, the whole
   image at 448 px on the short side (592 × 448 → 37 × 28 = 1,036 patches) against the same map at
   224 px (304 × 224 → 19 × 14 = 266 patches), both measured in this run (median of ``--repeats``).
   Target: ratio <= 5×. The default centre-crop map (224 × 224, 196 patches) is printed for context.
2. Localisation: pointing game (Zhang et al. 2016) on two-object wide scenes
   (:mod:`clipviz.data.wide`: 128 × 64 canvases, one object in each side margin, the text naming one
   of them) for each bundled model: centre crop (the processor's default: the objects are outside
   it), whole image at the native short side (64 px: an 8 × 16 grid) and at 2× (128 px: 16 × 32).
   Target: whole image >= 85% where the centre crop scores 0%.

Run: ``python benchmarks/bench_resolution.py [--n 100] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import clipviz  # noqa: E402
from clipviz import zoo  # noqa: E402
from clipviz.data import wide  # noqa: E402
from clipviz.heatmap_eval import pointing_game  # noqa: E402

BUNDLED = ("shapes-clip", "shapes-chinese-clip", "shapes-altclip")
MODES = [("centre crop (default)", None), ("whole image, 1x (64 px)", 64), ("whole image, 2x (128 px)", 128)]


def _photo():
    from PIL import Image

    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))


def cost(repeats: int) -> None:
    from clipviz.testing import VIT_B16, random_checkpoint

    text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2)
    directory = random_checkpoint(Path(tempfile.mkdtemp()) / "vit-b16", "clip", vision=VIT_B16, text=text,
                                  projection_dim=512, context=77, logit_scale=None)
    model = clipviz.load(directory, device="cpu")
    photo, text = _photo(), "a photo of a red circle"
    runs = {"centre crop 224 x 224": None, "whole image, 224 px short side": 224, "whole image, 448 px short side": 448}
    clipviz.heatmap(model, photo, text)  # warm-up: the first call pays allocation and thread start-up
    times = {label: [] for label in runs}
    grids = {}
    for _ in range(repeats):  # interleaved, so a busy moment of the shared CPU hits every mode alike
        for label, resolution in runs.items():
            started = time.perf_counter()
            grids[label] = clipviz.heatmap(model, photo, text, resolution=resolution).grid.shape
            times[label].append(time.perf_counter() - started)
    print(f"\n## Cost: relevance map, ViT-B/16-sized random CLIP, 640 x 480 photo (median of {repeats})\n")
    print("| mode | grid | s / map |")
    print("|---|---|---:|")
    medians = {}
    for label in runs:
        medians[label] = statistics.median(times[label])
        print(f"| {label} | {grids[label][0]} x {grids[label][1]} | {medians[label]:.2f} |")
    ratio = medians["whole image, 448 px short side"] / medians["whole image, 224 px short side"]
    print(f"| 448 px / 224 px | | {ratio:.2f}x (target <= 5x) |")
    sys.stdout.flush()


def localisation(n: int) -> None:
    queries = wide.queries(n, seed=5)
    print(f"\n## Pointing game: {n} wide scenes (128 x 64, one object in each side margin), relevance\n")
    print("| model | " + " | ".join(label for label, _ in MODES) + " |")
    print("|---|" + "---:|" * len(MODES))
    for name in BUNDLED:
        if name not in zoo.available():
            print(f"| {name} | not trained yet |")
            continue
        model = clipviz.load(name)
        cells = []
        for _, resolution in MODES:
            hits = [pointing_game(clipviz.heatmap(model, image, text, resolution=resolution), box)
                    for image, text, box in queries]
            cells.append(f"{np.mean(hits):.1%}")
        print(f"| {name} | " + " | ".join(cells) + " |")
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100, help="wide scenes per model (0: skip)")
    parser.add_argument("--repeats", type=int, default=5, help="timed maps per mode (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if args.repeats:
        cost(args.repeats)
    if args.n:
        localisation(args.n)


if __name__ == "__main__":
    main()
