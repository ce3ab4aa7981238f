"""Model cards (README.md) for the bundled shapes models, written from the training report."""

from __future__ import annotations

import json
from pathlib import Path

from clipviz.data import shapes
from clipviz.zoo import FAMILY_MODELS

_FAMILY_TEXT = {
    "clip": ("CLIPModel", "byte-level BPE (CLIPTokenizer, vocab.json + merges.txt), lower-cased",
             "English", "Radford et al. 2021, *Learning Transferable Visual Models From Natural "
             "Language Supervision*"),
    "chinese_clip": ("ChineseCLIPModel", "BERT WordPiece (BertTokenizer, vocab.txt), one token "
                     "per Chinese character", "Chinese (3/4 of captions) and English (1/4)",
                     "Yang et al. 2022, *Chinese CLIP: Contrastive Vision-Language Pretraining in "
                     "Chinese*; Zhai et al. 2022, *LiT: Zero-Shot Transfer with Locked-image text Tuning*"),
    "altclip": ("AltCLIPModel", "XLM-R style unigram (XLMRobertaTokenizer, tokenizer.json)",
                "English, Chinese, French, Spanish, German", "Chen et al. 2022, *AltCLIP: Altering "
                "the Language Encoder in CLIP for Extended Language Capabilities*"),
}


def model_card(name: str, report_dict: dict, size_bytes: int, notes: str = "") -> str:
    family = report_dict["family"]
    cls, tokenizer, languages, paper = _FAMILY_TEXT[family]
    stage_rows = "\n".join(
        f"| {i + 1}. {s['name']} | {s['description']} | {s.get('world', 'plain')} | {s['steps']} | {s['batch_size']} | "
        f"{s['learning_rate']:g} | {s['seconds'] / 60:.1f} min ({s['seconds'] / s['steps']:.2f} s/step) |"
        for i, s in enumerate(report_dict["stages"]))
    total_minutes = sum(s["seconds"] for s in report_dict["stages"]) / 60
    metric_rows = "\n".join(_metric_row(lang, report_dict) for lang in report_dict["metrics"])
    return f"""---
language: [{", ".join(sorted(set(_lang_codes(languages))))}]
library_name: transformers
tags: [clip, zero-shot-image-classification, synthetic, clipviz]
---

# {name}

A tiny `{cls}` (model type `{family}`) trained by clipviz on the **shapes world**
(`clipviz.data.shapes`): 64 x 64 images of one or two coloured shapes with known ground truth.
It is a teaching model: every zero-shot answer and every heatmap can be checked against the truth.

Load it offline with `clipviz.load("{name}")`, or with plain transformers:

```python
from transformers import AutoModel, AutoProcessor
model = AutoModel.from_pretrained(clipviz.zoo.path("{name}"))
processor = AutoProcessor.from_pretrained(clipviz.zoo.path("{name}"))
```

## Data
Scenes from `shapes.sample(...)`: {len(shapes.COLORS)} colours ({", ".join(shapes.COLORS)}),
{len(shapes.SHAPES)} shapes ({", ".join(shapes.SHAPES)}), 2 sizes, random positions; half of each batch
one-object, half two-object scenes. {_WORLD_TEXT[_world(report_dict)]} Captions in {languages}, e.g.
"red circle", "a small red circle and a large blue star", with a random order of objects, sizes
half the time, and sometimes only one of two objects mentioned.{_captions_text(report_dict.get("captions", "ordered"))} Training uses scene seeds
>= 1,000,000 only; all figures below are on seed 2026 (binding: 2027), never seen in training.

## Architecture
ViT image tower: 64 x 64 input, 8 x 8 patches (an 8 x 8 patch grid), width 128, 4 layers, 4 heads.
Text tower: the family's own ({cls}), width 128, 3 layers, 4 heads, at most 32 tokens.
Joint embedding: 128 dimensions. Tokenizer: {tokenizer}, learned from the shapes world's phrases.
Parameters: {report_dict['parameters']:,}; `model.safetensors`: {size_bytes / 2**20:.1f} MiB (float32).

## Recipe
Following {paper}, in miniature. AdamW (weight decay 0.1 on matrices), linear warm-up then cosine
decay, gradient clipping at 1, temperature clipped at 100. The contrastive loss is CLIP's symmetric
cross-entropy with multi-positive targets: in a world of 30 classes a batch holds many captions
that fit several images, and those are not treated as negatives.

| stage | what it does | world | steps | batch | learning rate | time |
|---|---|---|---|---|---|---|
{stage_rows}

Total training time: **{total_minutes:.1f} min** wall-clock on {report_dict['threads']} CPU thread(s) of a 2-core
machine shared with other jobs (the s/step column shows how busy it was), seed {report_dict['seed']}{_pool_text(report_dict)}.
Reproduce with `python -m clipviz.zoo.train --family {family} --seed {report_dict["seed"]} --threads {report_dict["threads"]}{_variant_options(name, report_dict)}`
(the same seed and thread count give the same weights).
{_resumed_text(report_dict)}{notes}
## Accuracy (300 held-out scenes of each kind)
Zero-shot top-1 over the 30 colour x shape labels (`shapes.class_labels(lang)`, no template) on
one-object scenes; present vs absent: on two-object scenes, how often the label of a present object
scores higher than the label of an absent one (all pairs). Four renderers: the plain world, the
wide world (`world="wide"`), and two independent renderers training never imports: Pillow
(`clipviz.data.drawn`: Pillow primitives, CSS colours, canvases of 64-160 px) and matplotlib
(`clipviz.data.plotted`: patches, Tableau/xkcd colours, pen outlines, canvases of 72-200 px).

| language | plain: zero-shot | plain: present vs absent | wide: zero-shot | wide: present vs absent | Pillow: zero-shot | matplotlib: zero-shot |
|---|---|---|---|---|---|---|
{metric_rows}
{_binding_text(report_dict.get("binding"), report_dict.get("binding_wide"))}
## Limits
A toy: it knows 6 colours, 5 shapes and 2 sizes, nothing else. Photos give meaningless answers.
"""


def write_record(directory, record: dict) -> None:
    """Write a saved model's ``training.json`` and its card (``README.md``) from ``record``."""
    directory = Path(directory)
    (directory / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    card = model_card(record.get("name") or FAMILY_MODELS[record["family"]], report_dict=record,
                      size_bytes=(directory / "model.safetensors").stat().st_size)
    (directory / "README.md").write_text(card, encoding="utf-8")


_CAPTION_TEXT = {
    "ordered": "",
    "shuffled": (" **Then every caption's words are put in random order** (`--captions shuffled`, e.g. "
                 "\"circle and red a square blue a\"): the text tower never sees word order, so it can only "
                 "learn which words a caption holds, a bag of words (Yuksekgonul et al. 2023). Everything "
                 "else is the recipe of shapes-clip."),
    "one-object": " Every caption names a single object (`--captions one-object`, a binding experiment).",
    "hard-negatives": (" Each two-object caption's attribute-swapped twin is added to the batch as a negative "
                       "(`--captions hard-negatives`, NegCLIP, Yuksekgonul et al. 2023)."),
}


def _captions_text(captions: str) -> str:
    return _CAPTION_TEXT[captions]


def _variant_options(name: str, report_dict: dict) -> str:
    """The command-line options beyond family, seed and threads that this model was trained with."""
    options = ""
    if report_dict.get("captions", "ordered") != "ordered":
        options += f" --captions {report_dict['captions']}"
    if _world(report_dict) != "curriculum":  # the default recipe
        options += f" --world {_world(report_dict)}"
    if report_dict.get("tokenizer"):
        options += f" --tokenizer {report_dict['tokenizer']}"
    if name != FAMILY_MODELS[report_dict["family"]]:
        options += f" --name {name}"
    return options


def _binding_text(binding, binding_wide=None) -> str:
    if binding is None:
        return ""
    wide = "" if binding_wide is None else f" (**{binding_wide:.1%}** on 250 such scenes of the wide world)"
    return (f"\nBinding: on 250 two-object scenes whose objects differ in colour and shape, the true caption "
            f"(\"a red circle and a blue square\") scores higher than its attribute-swapped twin (\"a blue "
            f"circle and a red square\") in **{binding:.1%}** of scenes{wide}; 50% is a bag of words "
            f"(`clipviz.zoo.evaluate.binding_accuracy`, Yuksekgonul et al. 2023).\n")


_WORLD_TEXT = {
    "plain": "Every stage trains on the plain world: fixed colours, 5 background tints with pixel noise.",
    "curriculum": (
        "A curriculum (Bengio et al. 2009): stages marked *plain* draw fresh scenes of the plain world "
        "(fixed colours, 5 background tints with pixel noise), where shape is easy to see; stages marked "
        "*wide* draw from a pre-rendered pool of the wide world (`shapes.sample(..., world=\"wide\")`: "
        "objects from 10 px to nearly the whole frame, rotations, outlined as well as filled shapes, "
        "shades around each colour, gradient and textured backgrounds, wobbly hand-drawn-like edges, "
        "aliased or anti-aliased, noise, blur, JPEG artefacts, non-square images), 30% of it plain "
        "scenes so the plain world is not forgotten."),
}


def _world(report_dict: dict) -> str:
    return report_dict.get("world", "plain") if report_dict.get("world") in _WORLD_TEXT else "plain"


def _pool_text(report_dict: dict) -> str:
    seconds = report_dict.get("pool_seconds", 0.0)
    if _world(report_dict) == "plain":
        return ""
    how = "reading" if report_dict.get("pool_cached") else "rendering"
    cache = " from a `--pool-cache` file rendered beforehand" if report_dict.get("pool_cached") else ""
    return f", plus {seconds / 60:.1f} min {how} the wide stages' pool of {2 * report_dict['pool_scenes']:,} scenes{cache}"


def _resumed_text(report_dict: dict) -> str:
    """Where the first stages came from when training resumed an earlier model (``--resume``)."""
    count = report_dict.get("resumed_stages", 0)
    if not count:
        return ""
    stages = "Stage 1 is that" if count == 1 else f"Stages 1-{count} are those"
    return (f"\n{stages} of an earlier run, resumed from `{report_dict['resumed_from']}` "
            f"(`--resume {report_dict['resumed_from']} --first-stage {count}`); their times are that run's.\n")


def _metric_row(lang: str, report_dict: dict) -> str:
    def cell(metrics, key=None):
        value = metrics.get(lang)
        if value is None:
            return "-"
        return f"{(value if key is None else value[key]):.1%}"

    plain, wide = report_dict["metrics"], report_dict.get("metrics_wide", {})
    return (f"| {lang} | {cell(plain, 'zero_shot')} | {cell(plain, 'present_vs_absent')} | "
            f"{cell(wide, 'zero_shot')} | {cell(wide, 'present_vs_absent')} | "
            f"{cell(report_dict.get('metrics_drawn', {}))} | {cell(report_dict.get('metrics_plotted', {}))} |")


def _lang_codes(languages: str):
    names = {"English": "en", "Chinese": "zh", "French": "fr", "Spanish": "es", "German": "de"}
    return [code for word, code in names.items() if word in languages]
