"""Zero-shot with a prompt ensemble: clipviz against transformers' pipeline doing the same work.

Task: 64 images x 100 labels x 10 templates (CLIP's English ensemble). Both sides in this process,
on the same random-weight model:

* clipviz: ``clipviz.zeroshot.classify(model, images, labels, templates)`` with a cold label cache:
  1,000 prompts encoded once (mean of unit embeddings per label, re-normalised), 64 images once.
  A second call with the labels cached (new images, same question) is reported too.
* pipeline: ``pipeline("zero-shot-image-classification")`` called on the 64 images once per
  template (``hypothesis_template=t``), the probabilities averaged over the 10 templates (the way a
  pipeline user ensembles: it returns scores, not embeddings). Per image it re-processes the image
  and re-encodes all 100 prompts, so it encodes 64,000 prompts and 640 images.

Correctness in the same run: clipviz's single-template probabilities against the pipeline's for
the first template (max |difference|).

Model: a random ``CLIPModel`` with a ViT-B/32 vision tower (width 768, 12 heads, patch 32, 224 px)
and a CLIP-B text tower (width 512, 8 heads, context 77), both cut to ``--layers`` layers (default 1,
so that the pipeline side finishes in minutes on 2 shared CPU cores; its cost per call is linear in
the layers, as is clipviz's); a byte-level BPE tokenizer learned offline. Images: 64 random RGB
photos of 320 x 256 (resized and cropped by the processor).

Run: ``python benchmarks/bench_zeroshot.py [--layers 1] [--images 64] [--labels 100]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import clipviz  # noqa: E402
from clipviz import zeroshot  # noqa: E402
from clipviz.data import shapes  # noqa: E402
from clipviz.testing import TEXT_B, VIT_B32, random_checkpoint  # noqa: E402


def make_labels(n: int) -> list[str]:
    """``n`` distinct, plausible class names (sizes x colours x shapes of the shapes world, then numbered)."""
    names = [f"{size} {color} {shape}" for size in ("tiny", "small", "large", "huge")
             for color, shape in shapes.CLASSES]
    names += [f"{color} {shape} number {i}" for i in range(n) for color, shape in shapes.CLASSES[:1]]
    return names[:n]


def build_model(directory: Path, layers: int, corpus: list[str]) -> Path:
    return random_checkpoint(directory, "clip", vision=dict(VIT_B32, num_hidden_layers=layers),
                             text=dict(TEXT_B, num_hidden_layers=layers), projection_dim=512, context=77,
                             corpus=corpus, vocab_size=2000, logit_scale=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=1, help="layers in each tower (ViT-B/32 has 12)")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--labels", type=int, default=100)
    args = parser.parse_args()

    from PIL import Image
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer, pipeline

    templates = zeroshot.TEMPLATES["en"]["ensemble"]
    labels = make_labels(args.labels)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (256, 320, 3), dtype=np.uint8)) for _ in range(args.images)]

    with tempfile.TemporaryDirectory() as tmp:
        path = build_model(Path(tmp), args.layers, zeroshot.prompts_for(labels, templates))
        model = clipviz.load(path, device="cpu")
        reference = pipeline("zero-shot-image-classification", model=AutoModel.from_pretrained(path).eval(),
                             tokenizer=AutoTokenizer.from_pretrained(path),
                             image_processor=AutoImageProcessor.from_pretrained(path, backend="pil"))
        print(f"torch threads: {torch.get_num_threads()}; model: ViT-B/32-wide vision + CLIP-B-wide text, "
              f"{args.layers} layers each, {sum(p.numel() for p in model.model.parameters()) / 1e6:.1f} M parameters")
        print(f"task: {len(images)} images x {len(labels)} labels x {len(templates)} templates")

        zeroshot.clear_label_cache(model)
        started = time.perf_counter()
        ours = zeroshot.classify(model, images, labels, templates=templates)
        cold = time.perf_counter() - started
        started = time.perf_counter()
        zeroshot.classify(model, images, labels, templates=templates)
        warm = time.perf_counter() - started

        started = time.perf_counter()
        averaged = np.zeros((len(images), len(labels)))
        first_template = None
        with torch.no_grad():
            for t, template in enumerate(templates):
                outputs = reference(images, candidate_labels=labels, hypothesis_template=template)
                for row, scored in enumerate(outputs):
                    by_label = {item["label"]: item["score"] for item in scored}
                    averaged[row] += [by_label[label] for label in labels]
                if t == 0:
                    first_template = averaged.copy()
        averaged /= len(templates)
        baseline = time.perf_counter() - started

        single = zeroshot.classify(model, images, labels, templates=templates[0])
        difference = float(np.abs(single.probs - first_template).max())
        agreement = float((ours.probs.argmax(1) == averaged.argmax(1)).mean())

    print(f"clipviz, cold label cache: {cold:7.2f} s  (1,000 prompts + {len(images)} images encoded once)")
    print(f"clipviz, labels cached:    {warm:7.2f} s  (images only)")
    print(f"transformers pipeline:     {baseline:7.2f} s  ({len(images) * len(templates)} calls, "
          f"{len(images) * len(templates) * len(labels):,} prompts encoded)")
    print(f"speed-up, cold: {baseline / cold:.1f}x   warm: {baseline / warm:.1f}x   (target >= 10x)")
    print(f"single-template parity with the pipeline: max |dp| = {difference:.2e}; "
          f"top-1 agreement of embedding- vs probability-averaged ensembles: {agreement:.0%}")


if __name__ == "__main__":
    main()
