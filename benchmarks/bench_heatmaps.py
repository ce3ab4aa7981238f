"""Heatmap quality on the shapes world, and AttentionApp slider latency.

1. Localisation: pointing game and energy-in-box for each method × bundled model on held-out
   two-object scenes (``clipviz.heatmap_eval.HELDOUT_SEED``; training uses seeds >= 1,000,000),
   the text naming one of the two objects ("a red circle"). Baselines measured in the same run on
   the same scenes: a uniformly random map and a centre prior (a Gaussian at the image centre);
   the ratio printed is relevance's pointing game over the random map's. Target: relevance >= 85%.
2. Faithfulness: mean deletion / insertion AUC (Petsiuk et al. 2018, logit units, 16 steps) on the
   first ``--faithfulness`` scenes, each against the same curve in a random patch order.
3. AttentionApp: median time of one slider move (layer / head / method / opacity; the map
   recomputed from the capture, blended at display size, JPEG encoded) against the straightforward
   way of drawing the same heatmap (``Heatmap.plot`` on a matplotlib Agg figure, PNG encoded), both
   in this run. Target: median <= 50 ms. Measured on the
   bundled shapes-clip (8 × 8 grid) and on a ViT-B/16-sized random CLIP (14 × 14 grid, 12 layers ×
   12 heads) with a 640 × 480 photo.

Run: ``python benchmarks/bench_heatmaps.py [--n 200] [--faithfulness 50] [--repeats 40]``
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
os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import clipviz  # noqa: E402
from clipviz import heatmap_eval, zoo  # noqa: E402
from clipviz.heatmaps import Heatmap, heatmap, method_record  # noqa: E402

BUNDLED = ("shapes-clip", "shapes-chinese-clip", "shapes-altclip")
METHODS = [
    ("attention", {}),  # last layer, head mean
    ("rollout", {}),
    ("relevance", {}),
    ("relevance", {"start_layer": -1}),  # Chefer's CLIP notebook default: last layer only
    ("grad_eclip", {}),
]


def _label(method, options):
    return method + ("" if not options else "(" + ", ".join(f"{k}={v}" for k, v in options.items()) + ")")


def _baseline_maps(grid_shape, rng):
    gh, gw = grid_shape
    ys, xs = np.mgrid[0:gh, 0:gw]
    centre = np.exp(-(((ys - (gh - 1) / 2) ** 2 + (xs - (gw - 1) / 2) ** 2) / (2 * (gh / 4) ** 2)))
    return {"random map (baseline)": rng.random(grid_shape), "centre prior (baseline)": centre}


def localisation(model, queries):
    rows = {}
    for method, options in METHODS:
        started = time.perf_counter()
        score = heatmap_eval.evaluate_localisation(model, queries, method, **options)
        rows[_label(method, options)] = (score.pointing, score.energy, (time.perf_counter() - started) / len(queries))
    rng = np.random.default_rng(0)
    grid_shape = model.grid_size
    hits = {name: [] for name in _baseline_maps(grid_shape, rng)}
    energies = {name: [] for name in hits}
    for image, _, box in queries:
        for name, grid in _baseline_maps(grid_shape, rng).items():
            geometry = clipviz.images.CropGeometry.from_processor(model.processor, image.size)
            fake = Heatmap.from_grid(grid / grid.max(), image, geometry, method=name)
            hits[name].append(heatmap_eval.pointing_game(fake, box))
            energies[name].append(heatmap_eval.energy_in_box(fake, box))
    for name in hits:
        rows[name] = (float(np.mean(hits[name])), float(np.mean(energies[name])), 0.0)
    return rows


def faithfulness(model, queries):
    rows = {}
    for method, options in [("rollout", {}), ("relevance", {}), ("grad_eclip", {})]:
        deletion, insertion, deletion_random, insertion_random = [], [], [], []
        for image, text, _ in queries:
            hm = heatmap(model, image, text if method_record(method).needs_text else None, method=method, **options)
            d = heatmap_eval.deletion_curve(model, hm, text, steps=16)
            i = heatmap_eval.insertion_curve(model, hm, text, steps=16)
            deletion.append(d.auc)
            deletion_random.append(d.random_auc)
            insertion.append(i.auc)
            insertion_random.append(i.random_auc)
        curves = (deletion, deletion_random, insertion, insertion_random)
        rows[_label(method, options)] = tuple(float(np.mean(v)) for v in curves)
    return rows


def build_vit_b16(directory: Path) -> Path:
    """A random CLIP with a ViT-B/16 vision tower (224 px, 14 × 14 patches) and a small text tower."""
    from clipviz.testing import VIT_B16, random_checkpoint

    text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2)
    return random_checkpoint(directory, "clip", vision=VIT_B16, text=text, projection_dim=512, context=77,
                             logit_scale=None)


def slider_latency(model, images, prompt, repeats):
    """Median seconds per slider move in the app, and for a naive full redraw of the same figure."""
    from clipviz.widgets.attention import AttentionApp

    app = AttentionApp(model, images=images, prompt=prompt)
    n_layers, n_heads = app.n_layers, app.n_heads
    moves = []
    for k in range(repeats):
        moves += [("layer", k % n_layers), ("method", ["attention", "rollout", "relevance", "grad_eclip"][k % 4]),
                  ("head", "mean" if k % 3 == 0 else k % n_heads), ("opacity", 0.3 + 0.1 * (k % 5))]
    app.state.method = "relevance"
    fast = []
    for name, value in moves:
        if getattr(app.state, name) == value:
            continue
        started = time.perf_counter()
        setattr(app.state, name, value)
        fast.append(time.perf_counter() - started)
        assert app.last_error is None, app.last_error
    # baseline: the straightforward way, the same heatmap redrawn with matplotlib (Heatmap.plot on
    # an Agg figure of the app's size) and encoded as PNG for the widget
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from clipviz.plotting.encode import image_bytes
    from clipviz.plotting.heatmaps import plot_heatmap

    figure = Figure(figsize=(4, 4), dpi=80)
    FigureCanvasAgg(figure)
    naive = []
    for _ in range(max(5, repeats // 2)):
        started = time.perf_counter()
        figure.clear()
        plot_heatmap(app.heatmap, ax=figure.add_subplot(), alpha=app.state.opacity)
        image_bytes(figure)
        naive.append(time.perf_counter() - started)
    return statistics.median(fast), statistics.median(naive), len(fast)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="two-object scenes per model")
    parser.add_argument("--faithfulness", type=int, default=50, help="scenes for deletion/insertion curves")
    parser.add_argument("--repeats", type=int, default=40, help="rounds of slider moves")
    parser.add_argument("--models", nargs="*", default=list(BUNDLED))
    parser.add_argument("--skip-b16", action="store_true", help="skip the ViT-B/16-sized latency run")
    args = parser.parse_args()
    torch.set_num_threads(1)  # small ops with several threads stall for ms each on a shared CPU

    present = [name for name in args.models if name in zoo.available()]
    missing = [name for name in args.models if name not in present]
    if missing:
        print(f"not trained yet, skipped: {', '.join(missing)}")
    queries = heatmap_eval.shapes_queries(max(args.n, args.faithfulness, 3))
    evaluated = present if args.n else []
    print(f"\n## Localisation: {args.n} held-out two-object scenes (seed {heatmap_eval.HELDOUT_SEED}), "
          "text names one object\n")
    print("| model | method | pointing game | energy in box | s / map |")
    print("|---|---|---:|---:|---:|")
    for name in evaluated:
        model = clipviz.load(name)
        rows = localisation(model, queries[: args.n])
        for label, (pointing, energy, seconds) in rows.items():
            print(f"| {name} | {label} | {pointing:.1%} | {energy:.1%} | {seconds:.3f} |")
        ratio = rows["relevance"][0] / max(rows["random map (baseline)"][0], 1e-9)
        print(f"| {name} | relevance / random map | {ratio:.2f}x | | |")
        sys.stdout.flush()

    if args.faithfulness:
        print(f"\n## Faithfulness: {args.faithfulness} scenes, AUC of the logit "
              "(deletion: lower is better; insertion: higher)\n")
        print("| model | method | deletion AUC | deletion, random order | insertion AUC | insertion, random order |")
        print("|---|---|---:|---:|---:|---:|")
        for name in present:
            model = clipviz.load(name)
            for label, (d, dr, i, ir) in faithfulness(model, queries[: args.faithfulness]).items():
                print(f"| {name} | {label} | {d:.2f} | {dr:.2f} | {i:.2f} | {ir:.2f} |")
            sys.stdout.flush()

    print("\n## AttentionApp: one slider move (median) vs a matplotlib redraw of the same map, same run\n")
    print("| model | grid | moves | slider move | matplotlib redraw | ratio |")
    print("|---|---|---:|---:|---:|---:|")
    runs = []
    if "shapes-clip" in present:
        runs.append(("shapes-clip", clipviz.load("shapes-clip"), [q[0] for q in queries[:3]], queries[0][1]))
    else:
        from tiny_models import build_tiny

        tiny = build_tiny("clip", Path(tempfile.mkdtemp()) / "tiny")
        runs.append(("tiny random CLIP", clipviz.load(tiny), [q[0] for q in queries[:3]], queries[0][1]))
    if not args.skip_b16:
        from PIL import Image

        b16 = build_vit_b16(Path(tempfile.mkdtemp()) / "vit-b16")
        rng = np.random.default_rng(0)
        photo = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
        runs.append(("ViT-B/16-sized random CLIP, 640x480 photo", clipviz.load(b16), [photo],
                     "a photo of a red circle"))
    for label, model, images, prompt in runs:
        fast, naive, count = slider_latency(model, images, prompt, args.repeats)
        grid = "x".join(map(str, model.grid_size))
        print(f"| {label} | {grid} | {count} | {fast * 1000:.1f} ms | {naive * 1000:.1f} ms "
              f"| {naive / fast:.1f}x faster |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
