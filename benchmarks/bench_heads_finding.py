"""Do the bundled models' vision heads specialise in colour or shape? (clipviz.inside.specialisation)

For each bundled model: TextSpan (Gandelsman et al., ICLR 2024) over 300 single-object shapes
scenes ranks the vision heads by the variance share of colour words and of shape words; the top
``k`` colour heads, then the top ``k`` shape heads, are mean-ablated (means over 100 other scenes)
and colour / shape zero-shot accuracy over the 30 colour × shape labels is measured.

Run: ``python benchmarks/bench_heads_finding.py [--top 1 2 4] [--models shapes-clip ...]``
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import clipviz  # noqa: E402
from clipviz.data import shapes  # noqa: E402
from clipviz.inside.specialisation import colour_vs_shape  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--top", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--models", nargs="+", default=["shapes-clip", "shapes-chinese-clip", "shapes-altclip"])
    parser.add_argument("--scenes", type=int, default=300)
    args = parser.parse_args()
    scenes = shapes.sample(args.scenes, seed=7)
    reference = [s.image for s in shapes.sample(100, seed=8)]
    for name in args.models:
        model = clipviz.load(name, device="cpu")
        for top in args.top:
            print(f"{name}, top {top}", flush=True)
            print(colour_vs_shape(model, scenes, reference, top=top), flush=True)
            print(flush=True)


if __name__ == "__main__":
    main()
