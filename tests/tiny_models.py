"""Tiny random models of the three families, built from configs as transformers' ``*ModelTester`` do.

Each is saved with ``save_pretrained`` together with a tokenizer of its family's real kind (CLIP
byte-level BPE, BERT WordPiece, XLM-R unigram) learned offline from a small corpus, so tests go
through exactly the loading path a user's checkpoint does.
"""

from __future__ import annotations

from pathlib import Path

import torch

FAMILIES = ("clip", "chinese_clip", "altclip")

CORPUS = [
    "a photo of a red circle",
    "a photo of a blue square on the left",
    "two green triangles and a yellow star",
    "une photo d'un cercle rouge",
    "una foto de un cuadrado azul",
    "ein Foto eines grünen Dreiecks",
    "红色圆形的照片",
    "蓝色正方形和黄色星星",
    "the quick brown fox jumps over the lazy dog",
]

VISION = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8)
TEXT = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)


def build_tiny(family: str, directory: Path, *, context: int = 32, seed: int = 0) -> Path:
    """Save a tiny random ``family`` model and its processor into ``directory``."""
    from transformers import AltCLIPConfig, AltCLIPModel, ChineseCLIPConfig, ChineseCLIPModel, CLIPConfig, CLIPModel

    from clipviz.zoo.tokenizers import build_processor, build_tokenizer

    tokenizer = build_tokenizer(family, CORPUS * 4, vocab_size=300, model_max_length=context)
    vocab = len(tokenizer)
    torch.manual_seed(seed)
    if family == "clip":
        text = dict(
            TEXT, vocab_size=vocab, max_position_embeddings=context,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=VISION, projection_dim=16))
    elif family == "chinese_clip":
        text = dict(TEXT, vocab_size=vocab, max_position_embeddings=context + 2, pad_token_id=tokenizer.pad_token_id)
        model = ChineseCLIPModel(ChineseCLIPConfig(text_config=text, vision_config=VISION, projection_dim=16))
    elif family == "altclip":
        text = dict(
            TEXT, vocab_size=vocab, max_position_embeddings=context + 2, project_dim=24,
            pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        )
        model = AltCLIPModel(AltCLIPConfig(text_config=text, vision_config=VISION, projection_dim=16))
    else:
        raise ValueError(family)
    # A non-trivial temperature, so logit tests are not trivially scale-free.
    model.logit_scale.data.fill_(2.0)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    build_processor(family, tokenizer, VISION["image_size"]).save_pretrained(directory)
    return directory


def single_tower_checkpoints(duals: dict[str, Path], directory: Path, *, seed: int = 0) -> dict[str, Path]:
    """``{class name: directory}``: every single-tower class cut from the tiny dual models in ``duals``
    (weights shared with the dual, so embeddings can be compared), and a tiny
    ``CLIPForImageClassification`` built from a config with three named labels; each saved with
    ``save_pretrained`` beside its half of the processor."""
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
