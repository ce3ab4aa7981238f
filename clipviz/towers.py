"""Every model class of the three families: dual encoders, single towers and CLIP image classifiers.

transformers ships more than the dual encoders (``CLIPModel``, ``ChineseCLIPModel``, ``AltCLIPModel``):

=================================  ========  ==========  ===============================================
class                              tower     projection  what clipviz calls its embedding
=================================  ========  ==========  ===============================================
``CLIPVisionModelWithProjection``  vision    yes         ``visual_projection(post-LN CLS)``, as the dual
``CLIPTextModelWithProjection``    text      yes         ``text_projection(EOS state)``, as the dual
``CLIPVisionModel``                vision    no          the pooled state (post-LN CLS)
``CLIPTextModel``                  text      no          the pooled state (EOS after the final LN)
``ChineseCLIPVisionModel``         vision    no          the pooled state (post-LN CLS)
``ChineseCLIPTextModel``           text      no          the [CLS] hidden state (what the dual projects;
                                                         BERT's own tanh pooler is not used by CLIP)
``AltCLIPVisionModel``             vision    no          the pooled state (post-LN CLS)
``AltCLIPTextModel``               text      no          ``transformation(pre_LN([CLS]))``
``CLIPForImageClassification``     vision    no          mean of the patch states (what its head reads)
=================================  ========  ==========  ===============================================

Embeddings are unit norm in every case (``hook_pooled`` keeps the unnormalised vector).

A :class:`TowerLayout` lays any of them out like a dual model — an object with ``vision_model``,
``visual_projection``, ``text_model``, ``text_projection`` where the class has them — so the family
adapter in :mod:`clipviz.families` finds the same modules, and the same hook names, in a single tower
as in the dual model it was cut from. A tower without a projection gets an ``nn.Identity`` in its
place, which is where ``{tower}.hook_pooled`` attaches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import torch
from torch import nn

from .families import TOWERS, family_of

KINDS = ("dual", "vision", "text", "classifier")


class MissingTowerError(ValueError):
    """Something needs a tower (or a head) this model does not have; the message says what to do."""


def _classes() -> dict[str, tuple[str, str, str, bool]]:
    """class name -> (family, kind, tower attribute or '' for the model itself, has projection)."""
    return {
        "CLIPModel": ("clip", "dual", "", True),
        "ChineseCLIPModel": ("chinese_clip", "dual", "", True),
        "AltCLIPModel": ("altclip", "dual", "", True),
        "CLIPVisionModelWithProjection": ("clip", "vision", "vision_model", True),
        "CLIPTextModelWithProjection": ("clip", "text", "text_model", True),
        "CLIPVisionModel": ("clip", "vision", "", False),
        "CLIPTextModel": ("clip", "text", "", False),
        "ChineseCLIPVisionModel": ("chinese_clip", "vision", "", False),
        "ChineseCLIPTextModel": ("chinese_clip", "text", "", False),
        "AltCLIPVisionModel": ("altclip", "vision", "", False),
        "AltCLIPTextModel": ("altclip", "text", "", False),
        "CLIPForImageClassification": ("clip", "classifier", "vision_model", False),
    }


SUPPORTED_CLASSES = tuple(_classes())


@dataclass(eq=False)
class TowerLayout:
    """Which towers a model has and where they are, laid out like a dual model (see the module doc)."""

    model_class: str
    family: str
    kind: str  # "dual" | "vision" | "text" | "classifier"
    towers: tuple[str, ...]
    parts: object  # .vision_model / .visual_projection / .text_model / .text_projection
    configs: dict = field(default_factory=dict)  # tower -> its config
    projected: dict = field(default_factory=dict)  # tower -> has a trained projection
    head: nn.Module | None = None  # the classifier's linear head
    labels: list | None = None  # the classifier's labels in head order

    def config(self, tower: str):
        """The config of ``tower``, or a :class:`MissingTowerError` naming what is missing."""
        if tower not in TOWERS:
            raise ValueError(f"tower must be one of {TOWERS}, not {tower!r}")
        if tower not in self.configs:
            raise MissingTowerError(missing_tower_message(self, tower))
        return self.configs[tower]

    def describe(self) -> str:
        """One line for the repr: the class and what its embeddings are."""
        if self.kind == "dual":
            return ""
        tower = self.towers[0]
        if self.kind == "classifier":
            what = f"{self.head.out_features} classes; embeds = mean patch state (no projection)"
        elif self.projected[tower]:
            what = "embeds = projected, as the dual model"
        else:
            what = "embeds = pooled states (no projection)"
        return f"{self.model_class}: {tower} tower only, {what}"


def missing_tower_message(layout: TowerLayout, tower: str, needed_for: str = "") -> str:
    purpose = f" for {needed_for}" if needed_for else ""
    other = "vision" if tower == "text" else "text"
    return (
        f"this model is a {layout.model_class}: it has only the {other} tower, and the {tower} tower is "
        f"needed{purpose}. Load a dual model (CLIPModel, ChineseCLIPModel, AltCLIPModel), or pair this "
        f"tower with a {tower} tower of the same checkpoint: clipviz.load(vision=..., text=...)."
    )


def layout_of(model) -> TowerLayout:
    """The :class:`TowerLayout` of a transformers model of any supported class, or a clear error."""
    known = _classes()
    name = next((cls.__name__ for cls in type(model).__mro__ if cls.__name__ in known), type(model).__name__)
    if name not in known:
        family_of(model.config)  # an unsupported family says so first
        raise MissingTowerError(
            f"clipviz does not know the class {name}; it wraps {', '.join(SUPPORTED_CLASSES)}"
        )
    family, kind, attribute, projected = known[name]
    config = model.config
    if kind == "dual":
        return TowerLayout(
            name, family, kind, TOWERS, model,
            configs={"vision": config.vision_config, "text": config.text_config},
            projected={"vision": True, "text": True},
        )
    tower = "text" if kind == "text" else "vision"
    inner = getattr(model, attribute) if attribute else model
    if kind == "classifier":
        config = config.vision_config
    if tower == "vision":
        projection = model.visual_projection if projected else nn.Identity()
        parts = SimpleNamespace(vision_model=inner, visual_projection=projection)
    else:
        projection = model.text_projection if projected else nn.Identity()
        parts = SimpleNamespace(text_model=inner, text_projection=projection)
    head = labels = None
    if kind == "classifier":
        head = model.classifier
        id2label = getattr(model.config, "id2label", None) or {}
        labels = [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(head.out_features)]
    return TowerLayout(name, family, kind, (tower,), parts, {tower: config}, {tower: projected}, head, labels)


def vector_sizes(layout: TowerLayout, tower: str) -> tuple[int, int]:
    """``(pooled size, embedding size)`` of ``tower``: what ``hook_pooled`` and ``hook_embeds`` hold."""
    projection = layout.parts.visual_projection if tower == "vision" else layout.parts.text_projection
    if isinstance(projection, nn.Linear):
        return projection.in_features, projection.out_features
    config = layout.config(tower)
    size = config.project_dim if (tower == "text" and layout.family == "altclip") else config.hidden_size
    return size, size


# ------------------------------------------------------------------------------ forward passes
def vision_vector(layout: TowerLayout, pixel_values: torch.Tensor, interpolate_pos_encoding: bool = False):
    """``(vector, pooled)``: the tower's output vector (projected where it has a projection) and the
    state the head or projection reads. Same computation as ``get_image_features`` of the dual model.
    """
    outputs = layout.parts.vision_model(pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding)
    if layout.kind == "classifier":
        # CLIPForImageClassification's head reads the mean of the last layer's patch states.
        pooled = outputs.last_hidden_state[:, 1:, :].mean(dim=1)
    else:
        pooled = outputs.pooler_output
    return layout.parts.visual_projection(pooled), pooled


def text_vector(layout: TowerLayout, tokens: dict) -> torch.Tensor:
    """The text tower's output vector (projected where it has a projection), as the dual model pools."""
    outputs = layout.parts.text_model(**tokens)
    if layout.family == "chinese_clip":
        pooled = outputs.last_hidden_state[:, 0, :]  # the dual projects [CLS], not BERT's tanh pooler
    else:
        pooled = outputs.pooler_output
    return layout.parts.text_projection(pooled)


# ------------------------------------------------------------------------------ classifiers
def resolve_target(labels: list[str], target) -> int:
    """A class index from a label (exact, then case-insensitive) or an index; a clear error otherwise."""
    if isinstance(target, bool):
        raise TypeError(f"target must be a class label or index, not {target!r}")
    if isinstance(target, (int,)) or (hasattr(target, "__index__") and not isinstance(target, str)):
        index = int(target)
        if not -len(labels) <= index < len(labels):
            raise ValueError(f"target={index} is out of range: the classifier has {len(labels)} classes (0..{len(labels) - 1})")
        return index % len(labels)
    if not isinstance(target, str):
        raise TypeError(f"target must be a class label (str) or a class index (int), not {type(target).__name__}")
    if target in labels:
        return labels.index(target)
    lowered = [label.lower() for label in labels]
    if target.lower() in lowered:
        return lowered.index(target.lower())
    import difflib

    close = difflib.get_close_matches(target, labels, n=3, cutoff=0.5)
    hint = f" Closest: {', '.join(map(repr, close))}." if close else ""
    shown = ", ".join(map(repr, labels[:10])) + (", ..." if len(labels) > 10 else "")
    raise ValueError(f"{target!r} is not one of the classifier's labels ({shown}).{hint}")


# ------------------------------------------------------------------------------ loading
def _architecture(config_dict: dict, weight_keys) -> str:
    """The class a saved checkpoint was written from: ``architectures`` first, else its weights."""
    architectures = config_dict.get("architectures") or []
    for name in architectures:
        if name in _classes():
            return name
    model_type = config_dict.get("model_type", "")
    keys = set(weight_keys or ())
    by_type = {
        "clip": "CLIPModel", "chinese_clip": "ChineseCLIPModel", "altclip": "AltCLIPModel",
        "chinese_clip_vision_model": "ChineseCLIPVisionModel", "chinese_clip_text_model": "ChineseCLIPTextModel",
        "altclip_vision_model": "AltCLIPVisionModel", "altclip_text_model": "AltCLIPTextModel",
    }
    if model_type == "clip" and any(k.startswith("classifier.") for k in keys):
        return "CLIPForImageClassification"
    if model_type == "clip_vision_model":
        return "CLIPVisionModelWithProjection" if "visual_projection.weight" in keys else "CLIPVisionModel"
    if model_type == "clip_text_model":
        return "CLIPTextModelWithProjection" if "text_projection.weight" in keys else "CLIPTextModel"
    if model_type in by_type:
        return by_type[model_type]
    family_of(SimpleNamespace(model_type=model_type))  # raises the unsupported-family error
    raise MissingTowerError(f"cannot tell which model class wrote this checkpoint (model_type={model_type!r})")


def _weight_keys(path) -> list[str]:
    from pathlib import Path

    path = Path(path)
    safetensors = sorted(path.glob("*.safetensors"))
    if safetensors:
        from safetensors import safe_open

        keys = []
        for file in safetensors:
            with safe_open(str(file), framework="pt") as handle:
                keys += list(handle.keys())
        return keys
    return []


def checkpoint_class(path) -> str:
    """The transformers class name a ``save_pretrained`` directory holds (see :data:`SUPPORTED_CLASSES`)."""
    import json
    from pathlib import Path

    config = json.loads((Path(path) / "config.json").read_text())
    architectures = [a for a in config.get("architectures") or [] if a in _classes()]
    return architectures[0] if architectures else _architecture(config, _weight_keys(path))


def kind_of_class(name: str) -> str:
    return _classes()[name][1]


def model_class(name: str):
    import transformers

    return getattr(transformers, name)


@dataclass
class TowerProcessor:
    """The processor of a single tower: an image processor, a tokenizer, or both (``None`` if absent)."""

    image_processor: object = None
    tokenizer: object = None


def read_processor(path, kind: str):
    """The processor for a checkpoint of ``kind``: the full processor if both parts are saved there."""
    from pathlib import Path

    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer

    from .loading import _PROCESSOR_FILES, _TOKENIZER_FILES

    path = Path(path)
    has_images = any((path / f).is_file() for f in _PROCESSOR_FILES)
    has_text = any((path / f).is_file() for f in _TOKENIZER_FILES)
    if has_images and has_text:
        processor = AutoProcessor.from_pretrained(path, backend="pil", trust_remote_code=False)
        if hasattr(processor, "image_processor") and hasattr(processor, "tokenizer"):
            return processor
    parts = TowerProcessor()
    if kind in ("vision", "classifier", "dual") and has_images:
        parts.image_processor = AutoImageProcessor.from_pretrained(path, backend="pil", trust_remote_code=False)
    if kind in ("text", "dual") and has_text:
        parts.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    return parts


# ------------------------------------------------------------------------------ cutting and pairing
def cut(model, tower: str):
    """The ``tower`` of a dual transformers model as a standalone model of the matching class.

    CLIP gives ``CLIPVisionModelWithProjection`` / ``CLIPTextModelWithProjection`` (projection kept,
    ``projection_dim`` taken from the dual config — the sub-config's default of 512 would not fit);
    Chinese-CLIP and AltCLIP have no projected single-tower classes, so they give
    ``ChineseCLIPVisionModel`` / ``ChineseCLIPTextModel`` / ``AltCLIPVisionModel`` / ``AltCLIPTextModel``.
    The weights are shared with ``model`` (no copy).
    """
    import copy

    import transformers

    layout = layout_of(model)
    if layout.kind != "dual":
        raise ValueError(f"cut() takes a dual model; this is a {layout.model_class}")
    if tower not in TOWERS:
        raise ValueError(f"tower must be one of {TOWERS}, not {tower!r}")
    config = copy.deepcopy(layout.configs[tower])
    family = layout.family
    names = {
        ("clip", "vision"): "CLIPVisionModelWithProjection", ("clip", "text"): "CLIPTextModelWithProjection",
        ("chinese_clip", "vision"): "ChineseCLIPVisionModel", ("chinese_clip", "text"): "ChineseCLIPTextModel",
        ("altclip", "vision"): "AltCLIPVisionModel", ("altclip", "text"): "AltCLIPTextModel",
    }
    cls = getattr(transformers, names[family, tower])
    if family == "clip":
        config.projection_dim = model.config.projection_dim
    config.architectures = [cls.__name__]
    kwargs = {"add_pooling_layer": False} if cls.__name__ == "ChineseCLIPTextModel" else {}
    with torch.device("meta"):
        single = cls(config, **kwargs)
    sub = model.vision_model if tower == "vision" else model.text_model
    if family == "clip":
        projection = model.visual_projection if tower == "vision" else model.text_projection
        setattr(single, "vision_model" if tower == "vision" else "text_model", sub)
        setattr(single, "visual_projection" if tower == "vision" else "text_projection", projection)
    else:
        single = sub  # the dual model's sub-model already is an instance of the single-tower class
        single.config.architectures = [cls.__name__]
    return single.eval()


def pair(vision, text, *, logit_scale: float | None = None):
    """A dual ``CLIPModel`` from a ``CLIPVisionModelWithProjection`` and a ``CLIPTextModelWithProjection``.

    Single towers do not store the dual model's temperature: pass ``logit_scale`` (the multiplier,
    e.g. ``100.0`` for OpenAI's checkpoints; ``model.logit_scale`` of the dual model you cut them
    from). Without it the CLIP paper's initial value 1/0.07 is used, which changes the logits' scale
    (and the softmax) but no ranking.
    """
    import math

    from transformers import CLIPConfig, CLIPModel

    vl, tl = layout_of(vision), layout_of(text)
    if vl.kind != "vision" or tl.kind != "text":
        raise ValueError(
            f"pair(vision, text) takes a vision tower and a text tower; got {vl.model_class} and {tl.model_class}"
        )
    if not (vl.projected["vision"] and tl.projected["text"]):
        unprojected = vl.model_class if not vl.projected["vision"] else tl.model_class
        raise ValueError(
            f"{unprojected} has no projection into a joint space, so no dual model can be rebuilt from it: "
            "pair CLIPVisionModelWithProjection with CLIPTextModelWithProjection (Chinese-CLIP and AltCLIP "
            "ship no projected single towers: load their dual checkpoint instead)"
        )
    v_dim, t_dim = vision.config.projection_dim, text.config.projection_dim
    if v_dim != t_dim:
        raise ValueError(f"the towers project to different sizes ({v_dim} vs {t_dim}): they are not from one checkpoint")
    config = CLIPConfig(
        text_config=text.config.to_dict(), vision_config=vision.config.to_dict(), projection_dim=v_dim
    )
    config.architectures = ["CLIPModel"]
    with torch.device("meta"):
        dual = CLIPModel(config)
    dual.vision_model, dual.visual_projection = vision.vision_model, vision.visual_projection
    dual.text_model, dual.text_projection = text.text_model, text.text_projection
    value = math.log(logit_scale) if logit_scale is not None else config.logit_scale_init_value
    dual.logit_scale = nn.Parameter(torch.tensor(value, dtype=vision.dtype, device=vision.device))
    return dual.eval()


# ------------------------------------------------------------------------------ classifying with the head
HEAD_TEMPLATE = "(the classifier's own head)"


def classify_with_head(model, images, labels=None, *, batch_size: int = 32, resolution=None):
    """An image classifier's predictions from its trained head, as a :class:`clipviz.zeroshot.ZeroShotResult`.

    ``labels``: ``None`` for every class in ``model.labels``, or a subset of them (names or indices);
    the probabilities are the softmax of the head's logits over the classes asked for. No prompts
    are involved: ``templates`` of the result is a one-item marker, :data:`HEAD_TEMPLATE`.
    """
    from . import images as _images
    from .zeroshot import ZeroShotResult

    all_labels = model.labels
    chosen = list(range(len(all_labels))) if labels is None else [resolve_target(all_labels, t) for t in labels]
    if not chosen:
        raise ValueError("no labels were given: pass None for all of model.labels, or a non-empty subset")
    loaded = _images.load_images(images)
    rows = []
    with torch.no_grad():
        for start in range(0, len(loaded), batch_size):
            pixels = model.pixel_values(loaded[start : start + batch_size], resolution=resolution)
            rows.append(model.class_logits(pixels).float().cpu())
    logits = torch.cat(rows)[:, chosen]
    probs = logits.double().softmax(dim=-1)
    return ZeroShotResult(
        labels=[all_labels[i] for i in chosen], probs=probs.numpy(), logits=logits.numpy(),
        templates=(HEAD_TEMPLATE,), lang="", model_name=getattr(model, "name", ""), images=loaded,
    )
