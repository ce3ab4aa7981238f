"""ZeroShotApp: pick or upload an image, type labels in any language, choose templates, see the bars.

Work happens once per change, never per keystroke: the labels box reports only on Enter or when it
loses focus (``continuous_update=False``). Label embeddings come from the model's cache
(:func:`clipviz.zeroshot.label_embeds`) and image embeddings from the app's own, so switching images
encodes one image and retyping known labels encodes nothing.

The chart is drawn with matplotlib's Agg canvas into an ``ipywidgets.Image``: no ``ipympl`` needed,
it works in every Jupyter frontend and in exported notebooks, and the same PNG is readable in tests.
"""

from __future__ import annotations

import contextlib

import ipywidgets as widgets
import traitlets
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from ..errors import InvalidArgument
from ..images import ImageLoadError, image_label, load_image, load_image_bytes
from ..plotting.encode import image_bytes
from ..zeroshot import (
    LANGUAGES,
    TEMPLATES,
    ZeroShotResult,
    default_language,
    default_template_set,
    label_embeds,
    parse_labels,
    resolve_templates,
    zero_shot_result,
)
from .reporting import check_choice, check_index, refuse_invalid, show_error

_THUMBNAIL = 56  # pixels, gallery strip
_DEFAULT_K = 10


class ZeroShotState(traitlets.HasTraits):
    """What the app asks; knows nothing about widgets."""

    image_index = traitlets.Int(0)
    labels_text = traitlets.Unicode("")
    template_set = traitlets.Unicode("ensemble")
    lang = traitlets.Unicode("en")
    k = traitlets.Int(_DEFAULT_K)


def _thumbnail_png(image: Image.Image) -> bytes:
    thumb = image.copy()
    thumb.thumbnail((_THUMBNAIL, _THUMBNAIL))
    return image_bytes(thumb)


def _uploaded_files(value) -> list[tuple[str, bytes]]:
    """``(name, bytes)`` of FileUpload's value (ipywidgets 8: a tuple of dicts; 7: a dict by name)."""
    if isinstance(value, dict):
        return [(name, bytes(item["content"])) for name, item in value.items()]
    return [(item["name"], bytes(item["content"])) for item in value]


def _check_k(value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgument("k", f"{value!r}: pass how many labels to show, 1 or more")


class ZeroShotApp(widgets.VBox):
    """Zero-shot classification, interactively.

    ``ZeroShotApp(model, images=[...], labels="cat, dog")``. ``images``: paths, PIL images or arrays
    (default: six scenes of the shapes world, with its 30 class labels). ``labels``: comma-separated
    text or a list; ``templates``: a template-set name of ``clipviz.zeroshot.TEMPLATES`` (default:
    ``default_template_set(model)``); ``lang``:
    the templates' language (default: the model family's).

    Read the outcome from ``app.result`` (a :class:`clipviz.zeroshot.ZeroShotResult` of the shown
    image) and ``app.last_error`` (``None`` or the message the app shows). Setting the traitlet
    ``image`` (e.g. ``traitlets.dlink((embedding_app, "selected_image"), (app, "image"))``) adds that
    image to the gallery and shows it.
    """

    image = traitlets.Any(None)

    def __init__(self, model, images=None, labels=None, *, templates: str | None = None, lang: str | None = None,
                 k: int = _DEFAULT_K, names=None):
        super().__init__()
        lang = default_language(model) if lang is None else lang
        templates = default_template_set(model) if templates is None else templates
        _check_k(k)
        if lang not in TEMPLATES:
            raise InvalidArgument("lang", f"no templates for language {lang!r}; choose one of {', '.join(LANGUAGES)}")
        if templates not in TEMPLATES[lang]:
            raise InvalidArgument("templates", f"no template set {templates!r}; choose one of {', '.join(TEMPLATES[lang])}")
        if images is None:
            from ..data import shapes

            scenes = shapes.sample(6, seed=0)
            images = [scene.image for scene in scenes]
            names = names or [f"{i}: {scene.caption('en', size=False)}" for i, scene in enumerate(scenes)]
            if labels is None:
                labels = shapes.class_labels(lang if lang in shapes.LANGUAGES else "en")
        sources = list(images) if isinstance(images, (list, tuple)) else [images]
        if not sources:
            raise ValueError("ZeroShotApp needs at least one image (or none at all, for the shapes-world gallery)")
        self.model = model
        self.images: list[Image.Image] = [load_image(source) for source in sources]
        self.names: list[str] = list(names) if names is not None else [image_label(s, i) for i, s in enumerate(sources)]
        labels_text = labels if isinstance(labels, str) or labels is None else ", ".join(labels)
        self.state = ZeroShotState(labels_text=labels_text or "", template_set=templates, lang=lang, k=k)
        self.result: ZeroShotResult | None = None
        self.last_error: str | None = None
        self.n_updates = 0  # classifications run (one per change; tests and curious users read it)
        self._image_embeds: dict[tuple[int, str], object] = {}  # (image index, vision weights version)
        self._held = False  # inside _one_update(): changes are noted, classified once at the end
        self._pending = False
        # values set from code are checked before the state takes them; a refusal shows in the app
        refuse_invalid(self, self.state, {
            "image_index": check_index("image_index", lambda: len(self.images), "image"),
            "lang": check_choice("lang", lambda: LANGUAGES),
            "template_set": check_choice("template_set", lambda: TEMPLATES[self.state.lang]),
            "k": _check_k,
        })

        self._gallery = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self._picker = widgets.Dropdown(description="image", layout=widgets.Layout(width="320px"))
        self._upload = widgets.FileUpload(accept="image/*", multiple=False, description="upload")
        self._labels = widgets.Text(value=self.state.labels_text, description="labels", continuous_update=False,
                                    placeholder="comma-separated, any language: cat, dog, 红色圆形",
                                    layout=widgets.Layout(width="98%"))
        self._lang = widgets.Dropdown(options=list(LANGUAGES), value=lang, description="language",
                                      layout=widgets.Layout(width="180px"))
        self._templates = widgets.Dropdown(description="templates", layout=widgets.Layout(width="360px"))
        self._chart = widgets.Image(format="png")
        self._table = widgets.HTML()
        self._status = widgets.HTML()
        self._errors = widgets.Output()
        self._refresh_gallery()
        self._refresh_template_options()

        widgets.link((self._picker, "value"), (self.state, "image_index"))
        widgets.link((self._labels, "value"), (self.state, "labels_text"))
        widgets.link((self._lang, "value"), (self.state, "lang"))
        widgets.link((self._templates, "value"), (self.state, "template_set"))
        self._upload.observe(self._on_upload, names="value")
        self.observe(self._on_image_trait, names="image")

        self._figure = Figure(figsize=(7, 3), dpi=80)
        FigureCanvasAgg(self._figure)

        controls = widgets.VBox([widgets.HBox([self._picker, self._upload]), self._labels,
                                 widgets.HBox([self._lang, self._templates])])
        self.children = [self._gallery, controls, self._errors, self._status, self._chart, self._table]
        # lang changes the template options first; one classification per change after that
        self.state.observe(self._on_lang, names="lang")
        self.state.observe(self._on_change, names=["image_index", "labels_text", "template_set", "k"])
        self._on_change()

    # ------------------------------------------------------------------ public actions
    def add_image(self, source, name: str | None = None, select: bool = True) -> int:
        """Add an image (path, PIL image, array) to the gallery; show it when ``select``. Returns its index."""
        image = load_image(source)
        with self._one_update():  # new picker options and the new selection: one classification
            self.images.append(image)
            self.names.append(name or image_label(source, len(self.images) - 1))
            self._refresh_gallery()
            index = len(self.images) - 1
            if select:
                self._picker.value = index
        return index

    def set_labels(self, labels) -> None:
        """Replace the labels (a list, or comma-separated text); the chart updates once."""
        self._labels.value = labels if isinstance(labels, str) else ", ".join(labels)

    # ------------------------------------------------------------------ widgets ← state
    def _refresh_gallery(self) -> None:
        thumbs = []
        for index, image in enumerate(self.images):
            thumb = widgets.Image(value=_thumbnail_png(image), format="png",
                                  layout=widgets.Layout(width=f"{_THUMBNAIL}px", height=f"{_THUMBNAIL}px",
                                                        margin="2px", object_fit="contain"))
            button = widgets.Button(description=str(index), tooltip=self.names[index],
                                    layout=widgets.Layout(width=f"{_THUMBNAIL}px", height="22px", margin="0 2px"))
            button.on_click(lambda _, index=index: setattr(self._picker, "value", index))
            thumbs.append(widgets.VBox([thumb, button]))
        self._gallery.children = thumbs
        current = self.state.image_index
        self._picker.options = [(name, i) for i, name in enumerate(self.names)]
        self._picker.value = current if current < len(self.images) else 0

    def _refresh_template_options(self) -> None:
        sets = TEMPLATES[self.state.lang]
        options = []
        for name, templates in sets.items():
            shown = f"{name}: {templates[0]}" if len(templates) == 1 else f"{name} ({len(templates)} templates)"
            options.append((shown, name))
        wanted = self.state.template_set if self.state.template_set in sets else next(iter(sets))
        self._templates.options = options
        self._templates.value = wanted

    # ------------------------------------------------------------------ callbacks
    def _report(self, error: Exception | None) -> None:
        show_error(self, error)  # the format every app shares (clipviz.widgets.reporting)

    @contextlib.contextmanager
    def _one_update(self):
        """Several widget changes that make up one user action cause at most one classification."""
        if self._held:
            yield
            return
        self._held, self._pending = True, False
        try:
            yield
        finally:
            self._held = False
            if self._pending:
                self._on_change()

    def _on_lang(self, change) -> None:
        with self._one_update():
            self._refresh_template_options()
            self._pending = True

    def _on_image_trait(self, change) -> None:
        if change["new"] is None:
            return
        try:
            self.add_image(change["new"], name=f"{len(self.images)}: linked image")
        except Exception as error:  # noqa: BLE001 - shown in the app
            self._report(error)

    def _on_upload(self, change) -> None:
        files = _uploaded_files(change["new"])
        if not files:
            return
        name, content = files[-1]
        try:
            image = load_image_bytes(content, name)
        except ImageLoadError as error:
            self._report(error)
            return
        self.add_image(image, name=f"{len(self.images)}: {name}")

    def _on_change(self, change=None) -> None:
        """Classify the chosen image over the typed labels and redraw: once per change."""
        if self._held:
            self._pending = True
            return
        try:
            self._classify()
            self._draw()
            self._report(None)
        except Exception as error:  # noqa: BLE001 - anything a user's input can raise belongs in the message
            self.result = None  # no stale answer beside the message
            self._chart.value, self._status.value, self._table.value = b"", "", ""
            self._report(error)

    def _classify(self) -> None:
        labels = parse_labels(self.state.labels_text)
        if not labels:
            raise ValueError("Type at least one label, separated by commas (e.g. “cat, dog, 红色圆形”).")
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValueError(f"“{repeated[0]}” is typed more than once: each label may appear only once.")
        lang, index = self.state.lang, self.state.image_index
        templates = resolve_templates(self.state.template_set, lang)
        class_embeds = label_embeds(self.model, labels, templates, lang=lang)
        self.result = zero_shot_result(self.model, self._image_embed(index), class_embeds, labels, templates, lang,
                                       [self.images[index]])
        self.n_updates += 1

    def _image_embed(self, index: int):
        """The shown image's embedding, cached like the label cache: per weights version, never under hooks."""
        if self.model.hooks_in_use("vision"):
            return self.model.image_embeds([self.images[index]])
        key = (index, self.model.weights_version("vision"))
        if key not in self._image_embeds:
            self._image_embeds = {k: v for k, v in self._image_embeds.items() if k[1] == key[1]}  # drop stale
            self._image_embeds[key] = self.model.image_embeds([self.images[index]])
        return self._image_embeds[key]

    def _draw(self) -> None:
        from ..plotting.zeroshot import plot_zeroshot

        result = self.result
        rows = min(self.state.k, len(result.labels))
        self._figure.clear()
        self._figure.set_size_inches(7, max(2.4, 0.3 * rows + 0.9))
        image_ax, bars_ax = self._figure.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.6]})
        plot_zeroshot(result, image=0, k=self.state.k, ax=(image_ax, bars_ax))
        image_ax.set_title(self.names[self.state.image_index], fontsize=9)
        self._figure.tight_layout()
        self._chart.value = image_bytes(self._figure)
        best_label, best_prob = result.top(1)[0]
        n = len(result.templates)
        self._status.value = (f"<b>{best_label}</b> ({best_prob:.1%}) · {len(result.labels)} labels · "
                              + ("1 template" if n == 1 else f"ensemble of {n} templates") + f" · {result.lang}")
        self._table.value = result._repr_html_()
