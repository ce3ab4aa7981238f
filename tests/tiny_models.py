"""The unit tests' tiny random models: :func:`clipviz.testing.random_checkpoint` with its tiny towers.

(The builder lives in the package so the benchmarks use the same one without path edits.)
"""

from __future__ import annotations

from pathlib import Path

from clipviz.testing import CORPUS, FAMILIES, TINY_TEXT, TINY_VISION, random_checkpoint

VISION = TINY_VISION
TEXT = TINY_TEXT

__all__ = ["CORPUS", "FAMILIES", "TEXT", "VISION", "build_tiny", "single_tower_checkpoints"]


def build_tiny(family: str, directory: Path, *, context: int = 32, seed: int = 0) -> Path:
    """Save a tiny random ``family`` model and its processor into ``directory``."""
    return random_checkpoint(directory, family, context=context, seed=seed)


def single_tower_checkpoints(duals: dict[str, Path], directory: Path, *, seed: int = 0) -> dict[str, Path]:
    """``{class name: directory}``: every single-tower class cut from the tiny dual models in ``duals``
    (weights shared with the dual, so embeddings can be compared), and a tiny
    ``CLIPForImageClassification`` built from a config with three named labels; each saved with
    ``save_pretrained`` beside its half of the processor."""
    import torch
    from transformers import AutoProcessor, CLIPConfig, CLIPForImageClassification, CLIPTextModel, CLIPVisionModel

    import clipviz
    from clipviz.towers import cut

    out = {}

    def save(model, processor_part, name):
        path = directory / name
        model.save_pretrained(path)
        processor_part.save_pretrained(path)
        out[name] = path

    for family, path in duals.items():
        dual = clipviz.load(path, device="cpu").model
        processor = AutoProcessor.from_pretrained(path, backend="pil")
        for tower in ("vision", "text"):
            single = cut(dual, tower)
            save(single, processor.image_processor if tower == "vision" else processor.tokenizer, type(single).__name__)
        if family == "clip":  # the projection-free CLIP towers: the inner models themselves
            vision = CLIPVisionModel(dual.config.vision_config)
            vision.load_state_dict(dual.vision_model.state_dict())
            save(vision, processor.image_processor, "CLIPVisionModel")
            text = CLIPTextModel(dual.config.text_config)
            text.load_state_dict(dual.text_model.state_dict())
            save(text, processor.tokenizer, "CLIPTextModel")
            torch.manual_seed(seed)
            labels = {0: "tabby cat", 1: "golden retriever", 2: "red circle"}
            config = CLIPConfig(vision_config=VISION, text_config=dict(TEXT, vocab_size=99), id2label=labels,
                                label2id={v: k for k, v in labels.items()})
            classifier = CLIPForImageClassification(config)
            save(classifier, processor.image_processor, "CLIPForImageClassification")
    return out
