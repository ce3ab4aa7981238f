"""The binding pair (shapes-clip and shapes-clip-bow) on held-out scenes of the plain shapes world.

    python benchmarks/bench_binding_pair.py [MODEL_DIR ...]   (default: the two bundled models)

Per model (English): zero-shot top-1 over the 30 colour x shape labels on 300 one-object scenes and
present-vs-absent on 300 two-object scenes (seed 2026), binding over 250 two-object scenes whose
objects differ in colour and shape (seed 2027: the true caption against its attribute-swapped twin,
the test of Yuksekgonul et al. 2023 on the shapes world) and zero-shot top-1 on 300 scenes of the
independent Pillow renderer (``clipviz.data.drawn``). All of it is ``clipviz.zoo.evaluate``; the
figures go to BENCHMARKS.md ("Issue 14", binding pair) and the model cards.
"""

import json
import sys
import time
from pathlib import Path

import torch
import transformers

from clipviz import zoo
from clipviz.zoo.evaluate import binding_accuracy, evaluate, evaluate_drawn

torch.set_num_threads(2)
dirs = sys.argv[1:] or [str(zoo.path(name)) for name in ("shapes-clip", "shapes-clip-bow")]
for d in dirs:
    started = time.perf_counter()
    model = transformers.AutoModel.from_pretrained(d).eval()
    processor = transformers.AutoProcessor.from_pretrained(d)
    plain = evaluate(model, processor, ("en",), n=300, world="plain")["en"]
    row = {"zero_shot_plain": round(plain["zero_shot"], 4),
           "present_vs_absent_plain": round(plain["present_vs_absent"], 4),
           "binding_plain": round(binding_accuracy(model, processor, n=250, world="plain"), 4),
           "zero_shot_drawn": round(evaluate_drawn(model, processor, ("en",), n=300)["en"], 4)}
    print(Path(d).name, json.dumps(row), f"({time.perf_counter() - started:.0f} s)", flush=True)
