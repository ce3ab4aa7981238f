"""Random checkpoints for tests and benchmarks, built from configs as transformers' ``*ModelTester`` do.

:func:`random_checkpoint` saves a randomly initialised model of any family with
``save_pretrained``, together with a tokenizer of the family's real kind (CLIP byte-level BPE,
BERT WordPiece, XLM-R unigram) learned offline from a small corpus, so whatever uses it goes
through exactly the loading path a user's checkpoint does. No network, no downloads.

    >>> from clipviz.testing import random_checkpoint, VIT_B16
    >>> model = clipviz.load(random_checkpoint(tmp_dir, "clip", vision=VIT_B16))

The tower presets are the published shapes (Radford et al. 2021, CLIP; Dosovitskiy et al. 2021,
ViT) for timings and geometry; ``TINY_VISION`` / ``TINY_TEXT`` are the unit tests' towers
(hidden 32, 2 layers, 4 heads, like transformers' ``CLIPModelTester``). :func:`start_local_ray`
starts the local Ray the scale tests and benchmarks share.
"""

from __future__ import annotations

from pathlib import Path

FAMILIES = ("clip", "chinese_clip", "altclip")

#: text the tokenizers are learned from: several languages and scripts, so padding and multi-byte
#: characters are exercised
CORPUS = (
    "a photo of a red circle",
    "a photo of a blue square on the left",
    "two green triangles and a yellow star",
    "une photo d'un cercle rouge",
    "una foto de un cuadrado azul",
    "ein Foto eines grünen Dreiecks",
    "红色圆形的照片",
    "蓝色正方形和黄色星星",
    "the quick brown fox jumps over the lazy dog",
)

TINY_VISION = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                   image_size=32, patch_size=8)
TINY_TEXT = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4)
#: published vision towers: ViT-B/32 and ViT-B/16 at 224 px, ViT-L/14 at 336 px
VIT_B32 = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
               patch_size=32, image_size=224)
VIT_B16 = dict(VIT_B32, patch_size=16)
VIT_L14_336 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                   patch_size=14, image_size=336)
#: CLIP ViT-B's text tower (transformers' CLIPTextConfig defaults)
TEXT_B = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8)


def random_checkpoint(directory, family: str = "clip", *, vision: dict | None = None, text: dict | None = None,
                      projection_dim: int = 16, context: int = 32, corpus=CORPUS * 4, vocab_size: int = 300,
                      seed: int = 0, logit_scale: float | None = 2.0) -> Path:
    """Save a random ``family`` model and its processor into ``directory``; returns the directory.

    ``vision`` / ``text``: tower configs (default ``TINY_VISION`` / ``TINY_TEXT``); clipviz fills
    in the vocabulary size (the tokenizer's, unless ``text`` names one), special token ids and ``max_position_embeddings`` (``context``, plus
    the 2 offset positions of BERT/XLM-R) unless given. AltCLIP's text tower gets ``project_dim=24``
    unless given. ``context``: the tokenizer's ``model_max_length``. ``seed``: torch's seed for the
    weights. ``logit_scale``: the stored log temperature (a non-trivial 2.0 by default, so logit
    tests are not scale-free; None keeps transformers' initial value).
    """
    import torch
    import transformers

    from .zoo.tokenizers import build_processor, build_tokenizer

    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    vision = dict(TINY_VISION if vision is None else vision)
    text = dict(TINY_TEXT if text is None else text)
    tokenizer = build_tokenizer(family, list(corpus), vocab_size=vocab_size, model_max_length=context)
    text.setdefault("vocab_size", len(tokenizer))  # a larger table (e.g. CLIP's 49,408) only if asked for
    text.update(pad_token_id=tokenizer.pad_token_id)
    if family in ("clip", "altclip"):
        text.update(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    text.setdefault("max_position_embeddings", context if family == "clip" else context + 2)
    if family == "altclip":
        text.setdefault("project_dim", 24)
    config_class, model_class = {
        "clip": (transformers.CLIPConfig, transformers.CLIPModel),
        "chinese_clip": (transformers.ChineseCLIPConfig, transformers.ChineseCLIPModel),
        "altclip": (transformers.AltCLIPConfig, transformers.AltCLIPModel),
    }[family]
    torch.manual_seed(seed)
    model = model_class(config_class(text_config=text, vision_config=vision, projection_dim=projection_dim))
    if logit_scale is not None:
        model.logit_scale.data.fill_(logit_scale)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    build_processor(family, tokenizer, vision["image_size"]).save_pretrained(directory)
    return directory


def start_local_ray(num_cpus: int = 2, *, object_store_memory: int = 256 * 2**20, pythonpath=None, attempts: int = 5):
    """Start a local Ray for tests and benchmarks on this machine; returns the ``ray`` module.

    Ray's workers run at the caller's priority (Ray renices them to 15 by default, so on a busy
    machine they wait behind every other process). ``pythonpath``: a checkout the workers import
    clipviz from instead of the installed one. Start-up is retried: Ray gives its raylet a fixed 30 s,
    which a loaded 2-core machine can miss.
    """
    import os

    import ray

    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    niceness = os.environ.get("RAY_worker_niceness")
    os.environ["RAY_worker_niceness"] = "0"  # read by the raylet when it starts
    try:
        for attempt in range(attempts):
            try:
                ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                         object_store_memory=object_store_memory, runtime_env={"env_vars": env})
                break
            except Exception:  # retried, then re-raised
                ray.shutdown()
                if attempt == attempts - 1:
                    raise
    finally:
        if niceness is None:
            os.environ.pop("RAY_worker_niceness", None)
        else:
            os.environ["RAY_worker_niceness"] = niceness
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    return ray
