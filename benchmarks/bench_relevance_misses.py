"""Where Chefer relevance misses on two-object shapes scenes, and whether the model agrees with it.

The scenes and texts of ``bench_heatmaps``' pointing game (held-out seed
``clipviz.heatmap_eval.HELDOUT_SEED``, the text naming one of two objects, alternating). For each
model:

1. Every relevance map's peak, sorted: on the named object (a hit), within half a patch of it
   (a near miss, the 8 x 8 grid's coarseness), on the *other* object, or on the background; split
   by what the other object shares with the named one (its colour, its shape, or nothing).
2. Object erasure, the model's own answer to "which object does this logit depend on": the
   image-text logit minus the logit with the named object painted over in the background colour,
   and the same for the other object. Reported for the hits and for the maps that peak on the other
   object: if the model used the other object, erasing it would lower the logit there.

Run: ``python benchmarks/bench_relevance_misses.py [--n 200] [--models DIR_OR_NAME ...]``
(default: the three bundled models; pass older checkpoints' directories to compare).
"""

from __future__ import annotations

import argparse
import os
from collections import Counter

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import clipviz  # noqa: E402
from clipviz import heatmap_eval, zoo  # noqa: E402
from clipviz.heatmaps import heatmap  # noqa: E402

BUNDLED = ("shapes-clip", "shapes-chinese-clip", "shapes-altclip")
OUTCOMES = ("hit", "near miss (within half a patch)", "other object", "background")
SHARED = ("nothing", "colour", "shape")


def outcome(hm, named, other, half_patch: float) -> str:
    if heatmap_eval.pointing_game(hm, named.box):
        return "hit"
    if heatmap_eval.pointing_game(hm, other.box):
        return "other object"
    if heatmap_eval.pointing_game(hm, named.box, tolerance=half_patch):
        return "near miss (within half a patch)"
    return "background"


def shared(named, other) -> str:
    return "colour" if named.color == other.color else "shape" if named.shape == other.shape else "nothing"


def measure(model, n: int):
    """``[(outcome, shared, logit drop erasing the named object, drop erasing the other)]`` per scene."""
    half_patch = model.patch_size / 2  # the shapes scenes are shown at the model's own size
    rows = []
    for scene, named, other in heatmap_eval.named_objects(n):  # the scenes and texts of shapes_queries
        text = named.describe("en", article=True)
        hm = heatmap(model, scene.image, text, method="relevance")
        rows.append((outcome(hm, named, other, half_patch), shared(named, other),
                     *heatmap_eval.erasure_drops(model, scene, text, [named, other])))
    return rows


def report(name: str, rows) -> None:
    n = len(rows)
    counts = Counter((o, s) for o, s, _, _ in rows)
    print(f"\n### {name} (n={n})\n")
    print("| relevance peak | " + " | ".join(f"other shares {s}" for s in SHARED) + " | all |")
    print("|---|" + "---:|" * (len(SHARED) + 1))
    for o in OUTCOMES:
        cells = [counts[(o, s)] for s in SHARED]
        print(f"| {o} | " + " | ".join(str(c) for c in cells) + f" | **{sum(cells)}** ({sum(cells) / n:.1%}) |")
    print("\nObject erasure (mean logit drop; positive: the logit needs that object):\n")
    print("| relevance peak | scenes | erase the named object | erase the other object | other's erasure lowers the logit more |")
    print("|---|---:|---:|---:|---:|")
    for o in ("hit", "other object"):
        chosen = [r for r in rows if r[0] == o]
        if not chosen:
            continue
        named = np.array([r[2] for r in chosen])
        other = np.array([r[3] for r in chosen])
        print(f"| {o} | {len(chosen)} | {named.mean():.2f} | {other.mean():.2f} | {int((other > named).sum())} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="two-object scenes per model")
    parser.add_argument("--models", nargs="*", default=list(BUNDLED), help="bundled names or checkpoint directories")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.models:
        path = zoo.path(name) if name in zoo.available() else name
        report(name, measure(clipviz.load(path), args.n))


if __name__ == "__main__":
    main()
