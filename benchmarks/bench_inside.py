"""Decomposition cost: clipviz.decompose against one plain forward of the same model.

A ViT-B/32-sized CLIP (random weights, CPU, one 224×224 image). Time of
``decompose(model, pixel_values=...)`` — every layer × head (and MLP) contribution to the image
embedding, exact — divided by the time of ``model.image_features(pixels)`` (the plain sdpa
forward). Median of interleaved runs in this process. Target <= 3.0. Also reported: the same with
the last layer split per patch (``positions=[-1]``, which needs that layer's attention pattern).

Run: ``python benchmarks/bench_inside.py [--repeats 9]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

import clipviz  # noqa: E402
from clipviz.inside import decompose  # noqa: E402
from clipviz.testing import VIT_B32, random_checkpoint  # noqa: E402

SMALL_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    with tempfile.TemporaryDirectory() as tmp:
        directory = random_checkpoint(Path(tmp), "clip", vision=VIT_B32, text=SMALL_TEXT, projection_dim=512, context=77)
        model = clipviz.load(directory, device="cpu")
        pixels = torch.randn(1, 3, 224, 224)

        def forward():
            with torch.no_grad():
                model.image_features(pixels)

        runs = {
            "forward": forward,
            "decompose": lambda: decompose(model, pixel_values=pixels),
            "decompose_positions": lambda: decompose(model, pixel_values=pixels, positions=[-1]),
        }
        for fn in runs.values():  # warm up
            fn()
        times = {name: [] for name in runs}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                times[name].append(timed(fn))
        median = {name: statistics.median(values) for name, values in times.items()}
        d = decompose(model, pixel_values=pixels)
    print(f"ViT-B/32-sized CLIP, 1 image, CPU ({torch.get_num_threads()} threads), median of {args.repeats}")
    print(f"  plain forward                      {median['forward'] * 1000:8.1f} ms")
    print(f"  decompose (layer x head)           {median['decompose'] * 1000:8.1f} ms   "
          f"ratio {median['decompose'] / median['forward']:.2f}  (target <= 3.0)")
    print(f"  decompose + last layer per patch   {median['decompose_positions'] * 1000:8.1f} ms   "
          f"ratio {median['decompose_positions'] / median['forward']:.2f}")
    print(f"  exactness: relative error {d.relative_error():.1e}")


if __name__ == "__main__":
    main()
