"""Capture cost: run_with_cache against the model's own eager forward, and CLS-row memory.

1. A ViT-B/32-sized CLIP (random weights, CPU). Time of ``run_with_cache`` capturing every vision
   attention pattern and hidden state, divided by the time of the same model loaded with
   ``attn_implementation="eager"`` computing ``get_image_features(output_attentions=True,
   output_hidden_states=True)``. Median of interleaved runs, both in this process. Target <= 1.10.
2. A ViT-L/14-336-sized vision tower: bytes of a CLS-row attention capture against a full one.
   Target <= 1/100.

Run: ``python benchmarks/bench_capture.py [--batch 8] [--repeats 7]``
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
from clipviz.testing import VIT_B32, VIT_L14_336, random_checkpoint  # noqa: E402

SMALL_TEXT = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2)


def build_clip(vision: dict, directory: Path) -> Path:
    """Save a random CLIP with this vision tower (and a tiny text tower) plus a processor."""
    return random_checkpoint(directory, "clip", vision=vision, text=SMALL_TEXT, projection_dim=512, context=77,
                             logit_scale=None)


def capture_overhead(directory: Path, batch: int, repeats: int) -> dict:
    from transformers import CLIPModel

    hooked = clipviz.load(directory, device="cpu")
    eager = CLIPModel.from_pretrained(directory, attn_implementation="eager").eval()
    pixels = torch.randn(batch, 3, 224, 224)
    def wanted(name):
        return name.startswith("vision") and ("pattern" in name or "resid_post" in name or name.endswith("hook_embed"))

    def run_clipviz():
        return hooked.run_with_cache(pixel_values=pixels, names_filter=wanted)

    def run_eager():
        with torch.no_grad():
            return eager.get_image_features(pixel_values=pixels, output_attentions=True, output_hidden_states=True)

    run_clipviz(), run_eager()  # warm-up
    times = {"clipviz": [], "eager": []}
    for _ in range(repeats):  # interleaved, so drifts in machine load hit both
        for label, fn in (("clipviz", run_clipviz), ("eager", run_eager)):
            start = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - start)
    _, cache = run_clipviz()
    reference = run_eager()
    assert len(reference.attentions) == 12 and len(cache) == 12 + 12 + 1
    medians = {k: statistics.median(v) for k, v in times.items()}
    return {**medians, "ratio": medians["clipviz"] / medians["eager"], "cache_mib": cache.nbytes / 2**20}


def cls_row_memory(directory: Path) -> dict:
    hooked = clipviz.load(directory, device="cpu")
    pixels = torch.randn(1, 3, 336, 336)
    patterns = lambda name: name.startswith("vision") and name.endswith("hook_pattern")  # noqa: E731
    _, full = hooked.run_with_cache(pixel_values=pixels, names_filter=patterns)
    _, rows = hooked.run_with_cache(pixel_values=pixels, names_filter=patterns, attention_rows="cls")
    assert hooked.grid_size == (24, 24)
    return {"full_mib": full.nbytes / 2**20, "cls_mib": rows.nbytes / 2**20, "ratio": rows.nbytes / full.nbytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        overhead = capture_overhead(build_clip(VIT_B32, Path(tmp) / "b32"), args.batch, args.repeats)
        print(
            f"ViT-B/32, batch {args.batch}: run_with_cache (all vision patterns + hidden states, "
            f"{overhead['cache_mib']:.1f} MiB) {overhead['clipviz'] * 1000:.0f} ms vs eager "
            f"output_attentions/hidden_states {overhead['eager'] * 1000:.0f} ms (median of {args.repeats}) "
            f"-> ratio {overhead['ratio']:.3f} (target <= 1.10)"
        )
        memory = cls_row_memory(build_clip(VIT_L14_336, Path(tmp) / "l14"))
        print(
            f"ViT-L/14-336, 1 image, all 24 layers' attention: full {memory['full_mib']:.1f} MiB, "
            f"CLS row {memory['cls_mib']:.2f} MiB -> ratio 1/{1 / memory['ratio']:.0f} (target <= 1/100)"
        )


if __name__ == "__main__":
    main()
