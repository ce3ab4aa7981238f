"""Zero-shot classification: labels become prompts, prompts become one embedding per label.

CLIP classifies an image without training by scoring it against a text for every class
("a photo of a dog.") and taking a softmax over the scaled cosine similarities (Radford et al.
2021, "Learning Transferable Visual Models From Natural Language Supervision"). A *prompt ensemble*
fills several templates with each label, averages the unit text embeddings over the templates and
re-normalises the mean (same paper, section 3.1.4); it is usually worth a few points of accuracy.

Template sets exist per language (``TEMPLATES``): English in CLIP's style, Chinese in the style of
Chinese-CLIP's evaluation prompts (Yang et al. 2022, "Chinese CLIP: Contrastive Vision-Language
Pretraining in Chinese", ``"{}的照片。"``), and French, Spanish and German, the other languages of the
shapes world. A model's family picks the default language (CLIP and AltCLIP: English, Chinese-CLIP:
Chinese); ``lang=`` overrides it, and ``templates=`` takes a set name, one template with ``"{}"`` or a
list of them.

Label embeddings are computed once per (labels, templates) and kept in a small LRU cache per model
(keyed on the text tower's ``weights_version``, so any weight edit is noticed), so asking new images
the same question costs only the image encoding. While hooks are attached to the text tower the
cache is neither read nor filled: a hooked run answers for itself only.

    >>> result = clipviz.zeroshot.classify(model, images, ["red circle", "blue square"])
    >>> result.probs.shape, result.top(1)
"""

from __future__ import annotations

import html
import numbers
import re
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import images as _images
from .errors import InvalidArgument, WrongType
from .model import check_encodable

# ---------------------------------------------------------------- templates, per language
#: ``TEMPLATES[lang][set_name]`` is a tuple of templates; ``"{}"`` marks where the label goes.
#: "single" is one plain template; "ensemble" ten varied ones (as in the CLIP paper's ImageNet
#: ensemble); "shapes" says labels the way the shapes world's captions do (bare, or after the
#: article: "a red circle", "一个红色圆形"; French, Spanish and German articles depend on the noun's
#: gender, so there it is the bare label), which suits the bundled models: their vocabulary never
#: saw the word "photo". Size words ("a small {}") were tried and left out: the models know sizes,
#: so "small" lowers the score of every large object (94.0% vs 95.0% top-1 on shapes-clip).
TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "en": {
        "single": ("a photo of a {}.",),
        "ensemble": (
            "a photo of a {}.", "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.",
            "a rendering of a {}.", "a drawing of a {}.", "a photo of the small {}.",
            "a photo of the large {}.", "a cropped photo of the {}.", "a close-up photo of a {}.",
        ),
        "shapes": ("{}", "a {}"),
    },
    # Chinese-CLIP's prompts put the label first and the kind of picture after it: "{}的照片。".
    "zh": {
        "single": ("{}的照片。",),
        "ensemble": (
            "{}的照片。", "质量差的{}的照片。", "许多{}的照片。", "{}的雕塑。", "{}的渲染。",
            "{}的手绘画。", "小{}的照片。", "大{}的照片。", "{}的裁剪照片。", "{}的特写照片。",
        ),
        "shapes": ("{}", "一个{}"),
    },
    # Gender-neutral phrasings ("une photo de ...") so that any noun fits without an article.
    "fr": {
        "single": ("une photo de {}.",),
        "ensemble": (
            "une photo de {}.", "une mauvaise photo de {}.", "une photo floue de {}.", "une sculpture de {}.",
            "un rendu de {}.", "un dessin de {}.", "une photo recadrée de {}.", "une photo en gros plan de {}.",
            "une image de {}.", "une peinture de {}.",
        ),
        "shapes": ("{}",),
    },
    "es": {
        "single": ("una foto de {}.",),
        "ensemble": (
            "una foto de {}.", "una mala foto de {}.", "una foto borrosa de {}.", "una escultura de {}.",
            "un render de {}.", "un dibujo de {}.", "una foto recortada de {}.", "una foto de cerca de {}.",
            "una imagen de {}.", "una pintura de {}.",
        ),
        "shapes": ("{}",),
    },
    "de": {
        "single": ("ein Foto: {}.",),
        "ensemble": (
            "ein Foto: {}.", "ein schlechtes Foto: {}.", "ein unscharfes Foto: {}.", "eine Skulptur: {}.",
            "ein Rendering: {}.", "eine Zeichnung: {}.", "ein zugeschnittenes Foto: {}.",
            "eine Nahaufnahme: {}.", "ein Bild: {}.", "ein Gemälde: {}.",
        ),
        "shapes": ("{}",),
    },
}
LANGUAGES = tuple(TEMPLATES)
DEFAULT_TEMPLATE_SET = "ensemble"
FAMILY_LANGUAGE = {"clip": "en", "chinese_clip": "zh", "altclip": "en"}

# model -> OrderedDict of label embeddings; kept here, not on the model, and gone with the model
_LABEL_CACHES: weakref.WeakKeyDictionary[object, OrderedDict] = weakref.WeakKeyDictionary()
LABEL_CACHE_SIZE = 16  # (labels, templates) entries kept per model
_LABEL_SEPARATORS = re.compile(r"[,，、;；\n]")  # ASCII and CJK commas, semicolons, new lines


def default_language(model) -> str:
    """The template language of ``model``'s family: ``"en"`` for CLIP and AltCLIP, ``"zh"`` for Chinese-CLIP."""
    return FAMILY_LANGUAGE.get(getattr(model, "family", None), "en")


#: top-level key of a checkpoint's config.json naming its default template set (a key of ``TEMPLATES[lang]``)
TEMPLATE_SET_KEY = "clipviz_template_set"


def default_template_set(model) -> str:
    """The template set the checkpoint's config names (``TEMPLATE_SET_KEY``), else ``"ensemble"``.

    The bundled models carry ``"clipviz_template_set": "shapes"``: they learned their vocabulary
    from shapes-world captions only, so words such as "photo" or "sculpture" are unknown to them and
    make CLIP's photo-style ensemble worse than saying the label the way their captions do (see
    tests/test_zeroshot.py for the figures). The marker travels with the checkpoint, so the choice
    holds however the model is loaded (bundled name, its directory, a copy) and whatever it is named.
    """
    config = getattr(getattr(model, "model", None), "config", None)
    marked = getattr(config, TEMPLATE_SET_KEY, None)
    return marked if isinstance(marked, str) and marked else DEFAULT_TEMPLATE_SET


def template_sets(lang: str = "en") -> dict[str, tuple[str, ...]]:
    """The named template sets of ``lang`` (``{"single": ..., "ensemble": ..., "shapes": ...}``)."""
    _check_language(lang)
    return dict(TEMPLATES[lang])


def _check_language(lang: str) -> None:
    if not isinstance(lang, str):
        raise WrongType("lang", f"got {type(lang).__name__} {lang!r}; pass a language code: {', '.join(LANGUAGES)}")
    if lang not in TEMPLATES:
        raise InvalidArgument(
            "lang", f"no templates for language {lang!r}; built-in languages: {', '.join(LANGUAGES)}. "
            "For another language pass your own: templates=['{} ...', ...] (with lang= any name you like)."
        )


def resolve_templates(templates=None, lang: str = "en") -> tuple[str, ...]:
    """Templates from a set name, one template string with ``"{}"``, or a list of templates."""
    if templates is None:
        templates = DEFAULT_TEMPLATE_SET
    if isinstance(templates, str):
        if "{}" in templates:
            return (templates,)
        _check_language(lang)
        if templates not in TEMPLATES[lang]:
            raise InvalidArgument(
                "templates", f"{templates!r} is neither a template (it has no '{{}}' where the label goes) nor a template "
                f"set of language {lang!r} ({', '.join(TEMPLATES[lang])})"
            )
        return TEMPLATES[lang][templates]
    if not isinstance(templates, (list, tuple)):
        raise WrongType("templates", f"got {type(templates).__name__}; pass a set name, a template with '{{}}' or a "
                                     "list of templates")
    templates = tuple(templates)
    if not templates:
        raise InvalidArgument("templates", "is empty: pass None (the default set), a set name, or templates with '{}'")
    for template in templates:
        if not isinstance(template, str):
            raise WrongType("templates", f"templates must be strings; got {type(template).__name__}: {template!r}")
        check_encodable(template, "templates")
        if "{}" not in template:
            raise InvalidArgument("templates", f"template {template!r} has no '{{}}' where the label goes, e.g. 'a photo of a {{}}.'")
    return templates


# ---------------------------------------------------------------- labels
def parse_labels(text: str) -> list[str]:
    """Split typed labels on commas (also Chinese ``，`` and ``、``), semicolons or new lines; drop blanks."""
    return [part.strip() for part in _LABEL_SEPARATORS.split(text) if part.strip()]


def check_labels(labels) -> list[str]:
    """Labels as a list of stripped strings; a ``ValueError`` saying what to fix otherwise."""
    if isinstance(labels, str):
        raise WrongType(
            "labels", f"labels must be a list of class names, not one string ({labels[:40]!r}); "
            "for comma-separated text use clipviz.zeroshot.parse_labels(text)"
        )
    if labels is not None and (isinstance(labels, (bytes, dict)) or not isinstance(labels, Iterable)):
        raise WrongType("labels", f"got {type(labels).__name__}; pass a list of class names, e.g. ['cat', 'dog']")
    labels = list(labels) if labels is not None else []
    if not labels:
        raise InvalidArgument("labels", "no labels were given: pass at least one class name, e.g. ['cat', 'dog']")
    for position, label in enumerate(labels):
        if not isinstance(label, str):
            raise WrongType("labels", f"label {position} is a {type(label).__name__} ({label!r}); labels must be strings")
        check_encodable(label, f"labels[{position}]")
    stripped = [label.strip() for label in labels]
    blank = [str(i) for i, label in enumerate(stripped) if not label]
    if blank:
        raise InvalidArgument(
            "labels", f"label(s) at position {', '.join(blank)} are empty or only whitespace: remove them or give them a name"
        )
    first_seen: dict[str, int] = {}
    for position, label in enumerate(stripped):
        if label in first_seen:
            raise InvalidArgument(
                "labels", f"label {label!r} appears twice (positions {first_seen[label]} and {position}): each label is one "
                "class and gets one probability, so remove the repeat (or reword one of them)"
            )
        first_seen[label] = position
    return stripped


def prompts_for(labels: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every label in every template, label-major: ``[l0 t0, l0 t1, ..., l1 t0, ...]``."""
    # str.replace rather than str.format: the user's template may contain other braces.
    return [template.replace("{}", label) for label in labels for template in templates]


# ---------------------------------------------------------------- label embeddings, cached per model
def label_embeds(model, labels, templates=None, lang: str | None = None, batch_size: int = 256) -> torch.Tensor:
    """``[n_labels, D]`` unit-norm class embeddings: each label's prompts averaged, then re-normalised.

    The mean of unit text embeddings over the templates, re-normalised, is CLIP's prompt ensemble
    (Radford et al. 2021). Results are cached per model and (labels, templates), keyed on
    ``model.weights_version("text")``: any change to a text-tower weight, in place or through
    ``.data``, is a new key. While clipviz hooks are attached to the text tower the cache is
    bypassed both ways (never read, never filled), so a hooked call gets the hooked answer and
    later unhooked calls the plain one.
    """
    labels = tuple(check_labels(labels))
    lang = default_language(model) if lang is None else lang
    templates = resolve_templates(default_template_set(model) if templates is None else templates, lang)
    hooked = bool(model.hooks_in_use("text"))
    cache = None if hooked else _LABEL_CACHES.setdefault(model, OrderedDict())
    if cache is not None:
        key = (labels, templates, model.weights_version("text"), str(model.device), model.dtype)
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    prompts = prompts_for(labels, templates)
    embeds = model.text_embeds(prompts, batch_size=batch_size).float()  # [n_labels * n_templates, D]
    embeds = embeds.view(len(labels), len(templates), -1).mean(dim=1)
    embeds = embeds / embeds.norm(dim=-1, keepdim=True)
    if cache is not None:
        cache[key] = embeds
        while len(cache) > LABEL_CACHE_SIZE:
            cache.popitem(last=False)
    return embeds


def clear_label_cache(model) -> None:
    """Forget the label embeddings cached for ``model``."""
    _LABEL_CACHES.pop(model, None)


# ---------------------------------------------------------------- the result
_HTML_ROWS = 20  # images shown in the table; the rest are counted
_THUMBNAIL = 40  # pixels


def _thumbnail_uri(image) -> str:
    from .plotting.encode import data_url

    thumb = image.copy()
    thumb.thumbnail((_THUMBNAIL, _THUMBNAIL))
    return data_url(thumb)


@dataclass(eq=False)
class ZeroShotResult:
    """Zero-shot probabilities of ``n_images`` images over ``labels``.

    ``probs`` and ``logits`` are numpy ``[n_images, n_labels]`` arrays (each ``probs`` row sums to 1);
    ``images`` the loaded images (for ``plot``), ``templates`` the prompts' templates, ``lang`` their language.
    """

    labels: list[str]
    probs: np.ndarray  # [n_images, n_labels]
    logits: np.ndarray  # [n_images, n_labels]
    templates: tuple[str, ...]
    lang: str
    model_name: str = ""
    images: list = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return self.probs.shape[0]

    def __repr__(self) -> str:
        return (f"ZeroShotResult({len(self)} image(s) x {len(self.labels)} labels, "
                f"{len(self.templates)} template(s), lang={self.lang!r}, top-1={self.predictions[:5]})")

    @property
    def predictions(self) -> list[str]:
        """The most probable label of every image."""
        return [self.labels[i] for i in self.probs.argmax(axis=1)]

    def top(self, k: int = 5, image: int | None = None):
        """The ``k`` most probable ``(label, prob)`` pairs, best first.

        For a result of one image (or with ``image=i``) a list of pairs; for several images a list
        of such lists, one per image.
        """
        if isinstance(k, bool) or not isinstance(k, numbers.Integral):
            raise WrongType("k", f"got {type(k).__name__} {k!r}; pass how many labels to list, e.g. k=5")
        if k < 1:
            raise InvalidArgument("k", f"must be at least 1, got {k}")
        k = min(k, len(self.labels))
        if image is not None:
            if isinstance(image, bool) or not isinstance(image, numbers.Integral):
                raise WrongType("image", f"got {type(image).__name__} {image!r}; pass the index of an image, 0..{len(self) - 1}")
            if not -len(self) <= image < len(self):
                raise InvalidArgument("image", f"{image} is out of range: this result has {len(self)} image(s), so pass "
                                               f"0..{len(self) - 1} (or negative, from the end)")
        rows = range(len(self)) if image is None else [range(len(self))[image]]
        tops = []
        for row in rows:
            order = np.argsort(-self.probs[row], kind="stable")[:k]
            tops.append([(self.labels[j], float(self.probs[row, j])) for j in order])
        return tops[0] if (image is not None or len(self) == 1) else tops

    def plot(self, image: int = 0, k: int = 10, ax=None):
        """The image beside a horizontal bar chart of its ``k`` most probable labels (see
        :func:`clipviz.plotting.zeroshot.plot_zeroshot`)."""
        from .plotting.zeroshot import plot_zeroshot

        return plot_zeroshot(self, image=image, k=k, ax=ax)

    def _repr_html_(self) -> str:
        k = min(3, len(self.labels))
        templates = (f"1 template ({html.escape(self.templates[0])})" if len(self.templates) == 1
                     else f"ensemble of {len(self.templates)} templates")
        head = (f"<div style='font-size:12px;margin-bottom:2px'><b>zero-shot</b> · "
                f"{html.escape(self.model_name or 'model')} · {len(self)} image(s) × {len(self.labels)} labels · "
                f"{templates} · lang {html.escape(self.lang)}</div>")
        rows = []
        for row in range(min(len(self), _HTML_ROWS)):
            cells = [f"<td style='text-align:right;color:#666'>{row}</td>"]
            if self.images:
                cells.append(f"<td><img src='{_thumbnail_uri(self.images[row])}' "
                             f"style='width:{_THUMBNAIL}px;image-rendering:pixelated'></td>")
            for label, prob in self.top(k, image=row):
                bar = f"<div style='background:#4c72b0;height:4px;width:{100 * prob:.1f}%'></div>"
                cells.append(f"<td style='min-width:110px;text-align:left'>{html.escape(label)} "
                             f"<b>{100 * prob:.1f}%</b>{bar}</td>")
            rows.append("<tr>" + "".join(cells) + "</tr>")
        more = (f"<tr><td colspan='{k + 2}' style='color:#666'>… {len(self) - _HTML_ROWS} more image(s)</td></tr>"
                if len(self) > _HTML_ROWS else "")
        header = "<th>#</th>" + ("<th>image</th>" if self.images else "") + "".join(
            f"<th style='text-align:left'>top {i + 1}</th>" for i in range(k))
        return (f"<div class='clipviz-zeroshot'>{head}<table style='border-collapse:collapse;font-size:12px'>"
                f"<tr>{header}</tr>{''.join(rows)}{more}</table></div>")


# ---------------------------------------------------------------- classify
def scores(model, image_embeds: torch.Tensor, class_embeds: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``(logits, probs)`` numpy ``[n_images, n_labels]`` from unit-norm embeddings, as CLIP scores them."""
    logits = model.logit_scale * image_embeds.float() @ class_embeds.float().t()
    probs = logits.double().softmax(dim=-1)  # float64 so that every row sums to 1 to the last digit
    return logits.numpy(), probs.numpy()


def zero_shot_result(model, image_embeds: torch.Tensor, class_embeds: torch.Tensor, labels: list[str],
                     templates: tuple[str, ...], lang: str, images, *, model_name: str | None = None) -> ZeroShotResult:
    """The one way a :class:`ZeroShotResult` is made (``classify``, ``compare`` and ``ZeroShotApp``).

    ``image_embeds``: unit-norm ``[n_images, D]`` of ``images``; ``class_embeds``: ``[n_labels, D]``
    from :func:`label_embeds` for ``labels`` (checked) with ``templates`` (resolved) in ``lang``.
    """
    logits, probs = scores(model, image_embeds, class_embeds)
    name = getattr(model, "name", "") if model_name is None else model_name
    return ZeroShotResult(labels=list(labels), probs=probs, logits=logits, templates=tuple(templates), lang=lang,
                          model_name=name, images=list(images))


def classify(model, images, labels=None, templates=None, lang: str | None = None, batch_size: int = 32,
             text_batch_size: int = 256) -> ZeroShotResult:
    """Zero-shot classify ``images`` (one or a list: paths, PIL images, arrays) over ``labels``.

    An image classifier (``CLIPForImageClassification``) answers with its own head instead:
    ``labels`` may then be left out (all of ``model.labels``) or name a subset
    (:func:`clipviz.towers.classify_with_head`).

    ``templates``: ``None`` (the language's ``"ensemble"`` set; ``"shapes"`` for the bundled
    models, see ``default_template_set``), a set name (``"single"``,
    ``"ensemble"``, ``"shapes"``), one template with ``"{}"``, or a list of them (averaged as an
    ensemble, Radford et al. 2021). ``lang``: the templates' language, by default the model
    family's (``default_language``). Images are encoded ``batch_size`` at a time, prompts
    ``text_batch_size`` at a time; label embeddings are cached on the model (``label_embeds``).
    """
    if getattr(model, "is_classifier", False):  # CLIPForImageClassification: its own head, no prompts
        from .towers import classify_with_head

        return classify_with_head(model, images, labels, batch_size=batch_size)
    lang = default_language(model) if lang is None else lang
    labels = check_labels(labels)
    resolved = resolve_templates(default_template_set(model) if templates is None else templates, lang)
    class_embeds = label_embeds(model, labels, resolved, lang=lang, batch_size=text_batch_size)
    loaded = _images.load_images(images)
    image_embeds = model.image_embeds(loaded, batch_size=batch_size)
    return zero_shot_result(model, image_embeds, class_embeds, labels, resolved, lang, loaded)


# ---------------------------------------------------------------- compare
@dataclass(eq=False)
class ZeroShotComparison:
    """Several zero-shot results over the same images and the same classes (label ``i`` of every
    entry names the same class), e.g. three model families, or one model asked in several languages.
    ``results`` maps an entry name ("shapes-clip · en") to its :class:`ZeroShotResult`."""

    results: dict[str, ZeroShotResult]

    @property
    def names(self) -> list[str]:
        return list(self.results)

    @property
    def images(self) -> list:
        return next(iter(self.results.values())).images

    def accuracy(self, truth: Sequence[int]) -> dict[str, float]:
        """Top-1 accuracy of every entry against class indices ``truth`` (one per image)."""
        truth = np.asarray(truth)
        return {name: float((r.probs.argmax(axis=1) == truth).mean()) for name, r in self.results.items()}

    def plot(self, k: int = 5, images: Sequence[int] | None = None, axes=None):
        """Images down the side, grouped bars (one colour per entry); see
        :func:`clipviz.plotting.zeroshot.plot_comparison`."""
        from .plotting.zeroshot import plot_comparison

        return plot_comparison(self, k=k, images=images, axes=axes)

    def _repr_html_(self) -> str:
        parts = [f"<div style='font-size:12px'><b>zero-shot comparison</b> · {len(self.results)} entries · "
                 f"{len(self.images)} image(s)</div>"]
        parts += [f"<div style='margin-top:4px'><b>{html.escape(name)}</b></div>{result._repr_html_()}"
                  for name, result in self.results.items()]
        return "".join(parts)


def compare(models, images, labels, templates=None, lang: str | None = None,
            batch_size: int = 32) -> ZeroShotComparison:
    """Classify the same ``images`` with several models and/or label languages, side by side.

    ``models``: one model, a list, or a ``{name: model}`` dict. ``labels``: a list (one language,
    ``lang`` as given or each model's default), or a ``{lang: labels}`` dict of translations with the
    same classes in the same order (each asked with that language's templates). Every
    (model, language) pair becomes one entry.
    """
    if isinstance(models, Mapping):
        named = dict(models)
    else:
        models = [models] if hasattr(models, "family") else list(models)
        named = {}
        for model in models:
            # a model loaded from a directory is named by its path; its last part reads better in a legend
            name = Path(str(getattr(model, "name", "") or model.family)).name or model.family
            named[name if name not in named else f"{name} ({len(named)})"] = model
    if not named:
        raise InvalidArgument("models", "no models were given: pass a model, a list of models or a {name: model} dict")
    by_language = dict(labels) if isinstance(labels, Mapping) else {lang: labels}
    sizes = {code: len(check_labels(values)) for code, values in by_language.items()}
    if len(set(sizes.values())) > 1:
        raise InvalidArgument("labels", f"every language must name the same classes in the same order; got counts {sizes}")
    loaded = _images.load_images(images)
    results = {}
    for model_name, model in named.items():
        image_embeds = model.image_embeds(loaded, batch_size=batch_size)
        for code, values in by_language.items():
            language = default_language(model) if code is None else code
            resolved = resolve_templates(default_template_set(model) if templates is None else templates, language)
            entry = model_name if len(by_language) == 1 and len(named) > 1 else f"{model_name} · {language}"
            class_embeds = label_embeds(model, values, resolved, lang=language)
            results[entry] = zero_shot_result(model, image_embeds, class_embeds, check_labels(values), resolved,
                                              language, loaded, model_name=model_name)
    return ZeroShotComparison(results)
