"""Bundled (or any saved) shapes models on four renderers, plus binding: issue 14's figures.

    python benchmarks/bench_zoo_worlds.py [MODEL_DIR ...]   (default: the bundled models)

Per model and reported language, all on held-out seeds (``clipviz.zoo.evaluate.measure``, the
figures the trainer writes into each card): zero-shot top-1 over the 30 colour x shape labels on 300
one-object scenes of the plain and the wide shapes world and of the two independent renderers
(Pillow: ``clipviz.data.drawn``; matplotlib: ``clipviz.data.plotted``), present vs absent on 300
two-object scenes of each world, and (English models) binding over 250 two-object scenes whose
objects differ in colour and shape, plain and wide (the true caption against its attribute-swapped
twin, Yuksekgonul et al. 2023). Prints one markdown table row per model and language (BENCHMARKS.md).
Targets (issue 14): zero-shot >= 97% on the native worlds and >= 90% on the independent renderers,
present vs absent >= 97%, binding >= 90% for shapes-clip and <= 65% for shapes-clip-bow.
"""

import json
import sys
import time
from pathlib import Path

import torch
import transformers

from clipviz import zoo
from clipviz.zoo.evaluate import measure

torch.set_num_threads(2)
dirs = [Path(d) for d in sys.argv[1:]] or [zoo.path(name) for name in zoo.available()]
print("| model | language | plain | wide | Pillow | matplotlib | present vs absent (plain / wide) | binding (plain / wide) |")
print("|---|---|---|---|---|---|---|---|")
for directory in dirs:
    started = time.perf_counter()
    model = transformers.AutoModel.from_pretrained(directory).eval()
    figures = measure(model, transformers.AutoProcessor.from_pretrained(directory), model.config.model_type)
    binding = ("-" if "binding" not in figures
               else f"{figures['binding']:.1%} / {figures['binding_wide']:.1%}")
    for lang, plain in figures["metrics"].items():
        wide = figures["metrics_wide"][lang]
        print(f"| {directory.name} | {lang} | {plain['zero_shot']:.1%} | {wide['zero_shot']:.1%} | "
              f"{figures['metrics_drawn'][lang]:.1%} | {figures['metrics_plotted'][lang]:.1%} | "
              f"{plain['present_vs_absent']:.1%} / {wide['present_vs_absent']:.1%} | {binding} |", flush=True)
    print(json.dumps({"model": directory.name, "seconds": round(time.perf_counter() - started, 1), **figures}),
          file=sys.stderr, flush=True)
