"""Bundled (or any saved) shapes models on three renderers, plus binding.

    python benchmarks/bench_zoo_worlds.py [MODEL_DIR ...]   (default: the bundled models)

Per model and language: zero-shot top-1 on the plain shapes world, on the wide shapes world and on
the independent Pillow renderer (``clipviz.data.drawn``), present-vs-absent on the wide world, and
(English models) binding over 250 held-out wide two-object scenes. Figures go to BENCHMARKS.md.
"""

import json
import sys
from pathlib import Path

import torch
import transformers

from clipviz import zoo
from clipviz.data import shapes
from clipviz.zoo.evaluate import (
    binding_accuracy,
    evaluate_drawn,
    present_vs_absent,
    zero_shot_accuracy,
)

torch.set_num_threads(2)
dirs = sys.argv[1:] or [str(zoo.path(name)) for name in zoo.available()]
n = 300
plain = shapes.sample(n, seed=2026, objects=1, world="plain")
wide = shapes.sample(n, seed=2026, objects=1, world="wide")
wide_pairs = shapes.sample(n, seed=2026, objects=2, world="wide")
results = {}
for d in dirs:
    model = transformers.AutoModel.from_pretrained(d).eval()
    processor = transformers.AutoProcessor.from_pretrained(d)
    family = model.config.model_type
    langs = {"clip": ("en",), "chinese_clip": ("zh",), "altclip": ("en", "zh", "de")}[family]
    row = {}
    drawn_acc = evaluate_drawn(model, processor, langs, n=n)
    for lang in langs:
        row[lang] = {"plain": zero_shot_accuracy(model, processor, plain, lang),
                     "wide": zero_shot_accuracy(model, processor, wide, lang),
                     "drawn": drawn_acc[lang],
                     "present_vs_absent_wide": present_vs_absent(model, processor, wide_pairs, lang)}
    if family == "clip":
        row["binding_wide"] = binding_accuracy(model, processor, world="wide")
        row["binding_plain"] = binding_accuracy(model, processor, world="plain")
    results[Path(d).name] = row
    print(Path(d).name, json.dumps(row), flush=True)
