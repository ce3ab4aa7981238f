"""Check a model against the shapes world's ground truth, with nothing but transformers.

Two figures, both on scenes from seeds never used in training (see ``batches.TRAIN_SEED_BASE``):

* zero-shot top-1: one-object scenes, the 30 colour x shape labels of ``shapes.class_labels``;
* present vs absent: two-object scenes; over every (present label, absent label) pair, how often
  the present object's label scores higher (a pairwise ranking accuracy, 0.5 is chance).
"""

from __future__ import annotations

import torch

from clipviz.data import shapes

EVAL_SEED = 2026
MAIN_LANGUAGES = {"clip": ("en",), "chinese_clip": ("zh",), "altclip": shapes.LANGUAGES}
REPORTED_LANGUAGES = {"clip": ("en",), "chinese_clip": ("zh", "en"), "altclip": shapes.LANGUAGES}


@torch.no_grad()
def label_logits(model, processor, scenes, lang: str, batch_size: int = 100) -> torch.Tensor:
    """``[scenes, 30]`` logits_per_image against the class labels in ``lang``."""
    labels = shapes.class_labels(lang)
    rows = []
    for start in range(0, len(scenes), batch_size):
        images = [s.image for s in scenes[start:start + batch_size]]
        inputs = processor(text=labels, images=images, padding=True, return_tensors="pt")
        rows.append(model(**inputs).logits_per_image)
    return torch.cat(rows)


def zero_shot_accuracy(model, processor, scenes, lang: str) -> float:
    logits = label_logits(model, processor, scenes, lang)
    truth = torch.tensor([shapes.CLASSES.index((s.objects[0].color, s.objects[0].shape)) for s in scenes])
    return (logits.argmax(dim=1) == truth).float().mean().item()


def present_vs_absent(model, processor, scenes, lang: str) -> float:
    logits = label_logits(model, processor, scenes, lang)
    wins = total = 0
    for row, scene in zip(logits, scenes):
        present = torch.zeros(len(shapes.CLASSES), dtype=torch.bool)
        for o in scene.objects:
            present[shapes.CLASSES.index((o.color, o.shape))] = True
        # every present score against every absent score
        comparison = row[present][:, None] > row[~present][None, :]
        wins += comparison.sum().item()
        total += comparison.numel()
    return wins / total


def evaluate(model, processor, languages, n: int = 300, seed: int = EVAL_SEED, world: str = "plain") -> dict:
    """``{lang: {"zero_shot": float, "present_vs_absent": float}}`` on ``n`` scenes of each kind."""
    model.eval()
    singles = shapes.sample(n, seed=seed, objects=1, world=world)
    pairs = shapes.sample(n, seed=seed, objects=2, world=world)
    return {lang: {"zero_shot": zero_shot_accuracy(model, processor, singles, lang),
                   "present_vs_absent": present_vs_absent(model, processor, pairs, lang)}
            for lang in languages}


BINDING_SEED = 2027
BINDING_SCENES = 250


def binding_scenes(n: int = BINDING_SCENES, seed: int = BINDING_SEED, world: str = "plain") -> list:
    """``n`` held-out two-object scenes whose objects differ in colour *and* shape."""
    scenes, index = [], 0
    while len(scenes) < n:
        scene = shapes.sample_one(seed, 2, index, world)
        index += 1
        a, b = scene.objects
        if a.color != b.color and a.shape != b.shape:
            scenes.append(scene)
    return scenes


@torch.no_grad()
def binding_accuracy(model, processor, n: int = BINDING_SCENES, seed: int = BINDING_SEED, lang: str = "en",
                     world: str = "plain") -> float:
    """How often the true caption ("a red circle and a blue square") beats its attribute-swapped
    twin ("a blue circle and a red square") on held-out two-object scenes; 0.5 is a bag of words
    (the ARO-style test of Yuksekgonul et al. 2023, on the shapes world)."""
    model.eval()
    wins = 0
    for scene in binding_scenes(n, seed, world):
        a, b = scene.objects
        true = shapes.join_phrases([shapes.describe(a.color, a.shape, lang, article=True),
                                    shapes.describe(b.color, b.shape, lang, article=True)], lang)
        twin = shapes.join_phrases([shapes.describe(b.color, a.shape, lang, article=True),
                                    shapes.describe(a.color, b.shape, lang, article=True)], lang)
        inputs = processor(text=[true, twin], images=[scene.image], padding=True, return_tensors="pt")
        logits = model(**inputs).logits_per_image[0]
        wins += int(logits[0] > logits[1])
    return wins / n


def evaluate_drawn(model, processor, languages, n: int = 300, seed: int = EVAL_SEED,
                   renderer: str = "drawn") -> dict:
    """Zero-shot top-1 on ``n`` one-object scenes of an independent renderer: ``"drawn"``
    (Pillow, ``clipviz.data.drawn``) or ``"plotted"`` (matplotlib, ``clipviz.data.plotted``),
    imported here only, so training never sees their code."""
    import importlib

    if renderer not in ("drawn", "plotted"):
        raise ValueError(f"unknown renderer {renderer!r}; expected 'drawn' or 'plotted'")
    model.eval()
    singles = importlib.import_module(f"clipviz.data.{renderer}").sample(n, seed=seed, objects=1)
    return {lang: zero_shot_accuracy(model, processor, singles, lang) for lang in languages}


def measure(model, processor, family: str, n: int = 300, binding: bool = True) -> dict:
    """Every figure a model card reports, keyed as in ``training.json`` (``binding=False``: all but
    the binding figures of English models)."""
    languages = REPORTED_LANGUAGES[family]
    figures = {"metrics": evaluate(model, processor, languages, n=n, world="plain"),
               "metrics_wide": evaluate(model, processor, languages, n=n, world="wide"),
               "metrics_drawn": evaluate_drawn(model, processor, languages, n=n),
               "metrics_plotted": evaluate_drawn(model, processor, languages, n=n, renderer="plotted")}
    if family == "clip" and binding:
        scenes = min(n, BINDING_SCENES)  # a smoke test's few scenes stay few
        figures["binding"] = binding_accuracy(model, processor, n=scenes)
        figures["binding_wide"] = binding_accuracy(model, processor, n=scenes, world="wide")
    return figures


def main(argv=None) -> None:
    """``python -m clipviz.zoo.evaluate DIR [DIR ...]``: measure saved shapes models again and
    write the figures into their ``training.json`` and model card (after a new evaluation renderer,
    or to check a card)."""
    import argparse
    import json
    from pathlib import Path

    import transformers

    from clipviz.zoo.card import write_record

    parser = argparse.ArgumentParser(description=main.__doc__.split("\n")[0])
    parser.add_argument("directories", nargs="+")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scenes", type=int, default=300, help="held-out scenes of each kind")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for directory in map(Path, args.directories):
        record_path = directory / "training.json"
        if not record_path.is_file():
            raise SystemExit(f"{directory} has no training.json: is it a model saved by clipviz.zoo.train?")
        record = json.loads(record_path.read_text())
        model = transformers.AutoModel.from_pretrained(directory).eval()
        figures = measure(model, transformers.AutoProcessor.from_pretrained(directory), record["family"], n=args.scenes)
        write_record(directory, {**record, **figures})
        print(directory.name, json.dumps(figures))


if __name__ == "__main__":
    main()
