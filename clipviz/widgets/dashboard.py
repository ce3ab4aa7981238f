"""Dashboard: the embedding map, zero-shot and heatmap apps in one layout, wired together.

The three apps share one pool of images. Selecting an image in the map (click it, or type its row
number) shows the same image in the zero-shot and heatmap tabs; selecting a text in the map makes it
the heatmap prompt. Each app keeps its own controls and its own error area; the dashboard only
links their state traitlets (``state.image_index``, ``state.prompt``), so nothing is computed twice.

    >>> from clipviz.widgets import Dashboard
    >>> Dashboard()                                   # bundled shapes-clip, shapes-world scenes
    >>> Dashboard("shapes-altclip")                   # any name clipviz.load takes, or a HookedCLIP
    >>> Dashboard(model, images=["cat.jpg", "dog.jpg"], texts=["a cat", "a dog"])
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import traitlets

from .attention import AttentionApp
from .embedding import EmbeddingApp
from .reporting import show_error
from .zeroshot import ZeroShotApp

TABS = ("map", "zero-shot", "heatmaps")
_DEFAULT_SCENES = 24  # two-object shapes scenes: enough for a readable map, quick to embed


class DashboardState(traitlets.HasTraits):
    """What is selected across the apps; knows nothing about widgets."""

    image_index = traitlets.Int(-1)  # position in the shared image pool, -1 for none
    prompt = traitlets.Unicode("")


class Dashboard(widgets.VBox):
    """The three clipviz apps in tabs, with the map's selection sent to the other two.

    ``model``: a :class:`clipviz.HookedCLIP`, a name for :func:`clipviz.load`, or ``None`` for the
    bundled default. ``images`` / ``texts`` / ``labels``: what the map shows (default: two-object
    shapes scenes, one object of each named as its prompt, and the 30 colour × shape labels in the
    model's language). ``prompts``: one heatmap prompt per image (default: the named object for the
    shapes scenes, the first text otherwise). ``projection``: the map's method (``"umap"``, ``"pca"``,
    ``"tsne"``); ``heatmap_method``: the heatmap app's starting method; ``tab``: the tab shown first.

    Sub-apps: ``dashboard.embedding``, ``dashboard.zeroshot``, ``dashboard.attention``; ``dashboard.tabs``
    is the ``ipywidgets.Tab`` holding them.
    """

    def __init__(self, model=None, images=None, texts=None, labels=None, *, prompts=None,
                 projection: str = "pca", heatmap_method: str = "relevance", tab: str = "map"):
        super().__init__()
        if tab not in TABS:
            raise ValueError(f"tab must be one of {', '.join(TABS)}, not {tab!r}")
        if model is None or isinstance(model, str):
            import clipviz

            model = clipviz.load(model)
        self.model = model
        self.last_error: str | None = None
        images, texts, labels, prompts = _contents(model, images, texts, labels, prompts)
        self.images, self.texts, self.prompts = images, texts, prompts
        self.state = DashboardState(prompt=prompts[0] if prompts else "")
        names = _image_names(labels, len(images))

        self.embedding = EmbeddingApp.from_model(model, images=images, texts=texts, labels=labels, method=projection)
        self.zeroshot = ZeroShotApp(model, images=images, labels=_zeroshot_labels(texts), names=names)
        self.attention = AttentionApp(model, images=images, labels=names, prompt=self.state.prompt,
                                      method=heatmap_method)
        for app, name in ((self.embedding, "embedding"), (self.zeroshot, "zeroshot"), (self.attention, "attention")):
            app.add_class(f"clipviz-{name}")  # stable hooks for styling and for the browser test
        self.add_class("clipviz-dashboard")

        self._header = widgets.HTML()
        self._errors = widgets.Output()
        self.tabs = widgets.Tab(children=[self.embedding, self.zeroshot, self.attention], titles=TABS,
                                 selected_index=TABS.index(tab))
        self.children = [self._header, self.tabs, self._errors]

        self.embedding.on_select(self._on_select)
        self.state.observe(self._forward_selection, names=["image_index", "prompt"])
        self._show_header()

    # ------------------------------------------------------------------ public actions
    def select_image(self, index: int) -> None:
        """Show image ``index`` of the pool in the zero-shot and heatmap apps (as a click on the map would)."""
        self._guarded(self._select_image, int(index))

    def show_tab(self, name: str) -> None:
        """Bring the tab ``name`` ("map", "zero-shot" or "heatmaps") to the front."""
        if name not in TABS:
            raise ValueError(f"tab must be one of {', '.join(TABS)}, not {name!r}")
        self.tabs.selected_index = TABS.index(name)

    # ------------------------------------------------------------------ callbacks
    def _on_select(self, row, item, modality) -> None:
        """The map's selection: an image goes to both apps, a text becomes the heatmap prompt."""
        if modality == "image":
            self.select_image(int(self.embedding.embeddings.index[row]))
        elif modality == "text":
            self._guarded(setattr, self.state, "prompt", str(item))

    def _select_image(self, index: int) -> None:
        if not 0 <= index < len(self.images):
            raise IndexError(f"there is no image {index}: choose 0 … {len(self.images) - 1}")
        if self.prompts:
            self.state.prompt = self.prompts[index]
        self.state.image_index = index

    def _forward_selection(self, change) -> None:
        state = self.state
        if change["name"] == "prompt":
            self.attention.state.prompt = state.prompt
        elif state.image_index >= 0:
            self.attention.state.image_index = state.image_index
            self.zeroshot.state.image_index = state.image_index
        self._show_header()

    def _guarded(self, function, *args) -> None:
        """Run a callback; a failure becomes a plain message under the tabs, never a lost traceback."""
        try:
            function(*args)
        except Exception as error:  # noqa: BLE001 - anything a selection can raise belongs in the message
            show_error(self, error)  # the format every app shares (clipviz.widgets.reporting)
            return
        show_error(self, None)

    def _show_header(self) -> None:
        model = self.model
        parts = [f"<b>{html.escape(str(model.name))}</b> ({model.family})",
                 f"{len(self.images)} images · {len(self.texts)} texts"]
        if self.state.image_index >= 0:
            parts.append(f"selected image {self.state.image_index}, shown in zero-shot and heatmaps")
        else:
            parts.append("click a point in the map (or type its number) to send it to the other tabs")
        if self.state.prompt:
            parts.append(f"prompt “{html.escape(self.state.prompt)}”")
        self._header.value = " · ".join(parts)


def _contents(model, images, texts, labels, prompts):
    """The shared pool: ``(images, texts, labels for images + texts, one prompt per image)``."""
    if images is None:
        from ..data import shapes
        from ..heatmap_eval import HELDOUT_SEED
        from ..zeroshot import default_language

        lang = default_language(model)
        lang = lang if lang in shapes.LANGUAGES else "en"
        # held-out two-object scenes; one object of each is named, alternately the first and the second
        scenes = shapes.sample(_DEFAULT_SCENES, seed=HELDOUT_SEED, objects=2)
        named = [scene.objects[i % 2] for i, scene in enumerate(scenes)]
        images = [scene.image for scene in scenes]
        query_prompts = [o.describe(lang, article=True) for o in named]
        # an image's label: the object its prompt names (so "colour by label" groups it with that text)
        image_labels = [o.describe(lang) for o in named]
        if texts is None:
            texts = shapes.class_labels(lang)
            text_labels = list(texts)
        else:
            text_labels = [None] * len(list(texts))
        labels = image_labels + text_labels if labels is None else labels
        prompts = query_prompts if prompts is None else prompts
    images = list(images) if isinstance(images, (list, tuple)) else [images]
    texts = [] if texts is None else ([texts] if isinstance(texts, str) else list(texts))
    if not images:
        raise ValueError("the dashboard needs at least one image")
    if not texts:
        raise ValueError("the dashboard needs at least one text (labels for zero-shot, prompts for heatmaps)")
    if prompts is None:
        prompts = [texts[0]] * len(images)
    prompts = list(prompts)
    if len(prompts) != len(images):
        raise ValueError(f"prompts: one per image expected ({len(images)}), got {len(prompts)}")
    return images, texts, labels, prompts


def _image_names(labels, n_images: int) -> list[str]:
    """Names for the image pickers: ``"3: red circle"`` from the image labels, else ``"image 3"``."""
    image_labels = labels.get("images") if isinstance(labels, dict) else (labels or [])[:n_images]
    image_labels = list(image_labels or [None] * n_images)
    return [f"{i}: {_short(label)}" if label is not None else f"image {i}" for i, label in enumerate(image_labels)]


def _zeroshot_labels(texts) -> list[str]:
    """The map's texts as zero-shot labels: duplicates dropped (the app refuses them), order kept."""
    return list(dict.fromkeys(t.replace(",", " ") for t in texts))


def _short(label, width: int = 28) -> str:
    text = str(label)
    return text if len(text) <= width else text[: width - 1] + "…"
