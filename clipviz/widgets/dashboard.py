"""Dashboard: the embedding map, zero-shot and heatmap apps in one layout, wired together.

The three apps share one pool of images. A selection in the map (click, or lasso many points) drives
the zero-shot tab — the top labels over the selected images, from the embeddings the map already
holds — and sends the first selected image to the zero-shot and heatmap apps; a selected text becomes
the heatmap prompt. Choosing an image in the zero-shot or heatmap tab highlights it on the map and
zooms to it. Each app keeps its own controls and its own error area; the dashboard only links their
state traitlets (``state.image_index``, ``state.prompt``), so nothing is computed twice.
``add_tab(title, widget)`` adds a tab (e.g. another app) after the built-in ones.

    >>> from clipviz.widgets import Dashboard
    >>> Dashboard()                                   # bundled shapes-clip, shapes-world scenes
    >>> Dashboard("shapes-altclip")                   # any name clipviz.load takes, or a HookedCLIP
    >>> Dashboard(model, images=["cat.jpg", "dog.jpg"], texts=["a cat", "a dog"])
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np
import traitlets

from .attention import AttentionApp
from .embedding import EmbeddingApp
from .heads import HeadsApp
from .reporting import show_error
from .zeroshot import ZeroShotApp

TABS = ("map", "zero-shot", "heatmaps", "heads")
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
    shapes scenes, the first text otherwise). ``projection``: the map's final layout (``"umap"``,
    ``"pca"``, ``"tsne"``; PCA is shown first either way); ``heatmap_method``: the heatmap app's starting method; ``tab``: the tab shown first.

    Sub-apps: ``dashboard.embedding`` (the map), ``dashboard.zeroshot``, ``dashboard.attention``;
    ``dashboard.selection_labels`` is the zero-shot tab's summary of the map's selection;
    ``dashboard.tabs`` is the ``ipywidgets.Tab`` holding them.
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

        self.embedding = EmbeddingApp.from_model(model, images=images, texts=texts, labels=labels, method=projection,
                                                 height=420)
        self.zeroshot = ZeroShotApp(model, images=images, labels=_zeroshot_labels(texts), names=names)
        self.attention = AttentionApp(model, images=images, labels=names, prompt=self.state.prompt,
                                      method=heatmap_method)
        self.heads = HeadsApp(model, images=images, prompt=self.state.prompt or "a red circle", names=names)
        for app, name in ((self.embedding, "embedding"), (self.zeroshot, "zeroshot"), (self.attention, "attention"),
                          (self.heads, "heads")):
            app.add_class(f"clipviz-{name}")  # stable hooks for styling and for the browser test
        self.add_class("clipviz-dashboard")

        self._header = widgets.HTML()
        self._errors = widgets.Output()
        self.selection_labels = widgets.HTML(value="<i>lasso images on the map to see the top labels over them</i>")
        self.selection_labels.add_class("clipviz-selection-labels")
        self.tabs = widgets.Tab()
        self._tab_titles: list[str] = []
        for title, widget in (("map", self.embedding), ("zero-shot", widgets.VBox([self.selection_labels, self.zeroshot])),
                              ("heatmaps", self.attention), ("heads", self.heads)):
            self.add_tab(title, widget)
        self.tabs.selected_index = TABS.index(tab)
        self.children = [self._header, self.tabs, self._errors]

        self.embedding.on_select(self._on_select)
        self.state.observe(self._forward_selection, names=["image_index", "prompt"])
        for app in (self.zeroshot, self.attention):
            app.state.observe(self._on_image_chosen, names="image_index")
        self._show_header()

    # ------------------------------------------------------------------ public actions
    def add_tab(self, title: str, widget) -> None:
        """Add ``widget`` as a tab called ``title`` (after the existing ones)."""
        if title in self._tab_titles:
            raise ValueError(f"there is already a tab {title!r}")
        self._tab_titles.append(title)
        self.tabs.children = [*self.tabs.children, widget]
        self.tabs.titles = tuple(self._tab_titles)

    def select_image(self, index: int) -> None:
        """Show image ``index`` of the pool in the zero-shot and heatmap apps (as a click on the map would)."""
        self._guarded(self._select_image, int(index))

    def show_tab(self, name: str) -> None:
        """Bring the tab ``name`` ("map", "zero-shot", "heatmaps", or one added with add_tab) to the front."""
        if name not in self._tab_titles:
            raise ValueError(f"tab must be one of {', '.join(self._tab_titles)}, not {name!r}")
        self.tabs.selected_index = self._tab_titles.index(name)

    # ------------------------------------------------------------------ callbacks
    def _on_select(self, rows) -> None:
        """The map's selection: top labels over its images; the first image goes to both apps, the
        first text (when no image is selected) becomes the heatmap prompt."""
        emb = self.embedding.embeddings
        image_rows = [r for r in rows if emb.modality[r] == "image"]
        text_rows = [r for r in rows if emb.modality[r] == "text"]
        self._guarded(self._summarise_selection, image_rows)
        if image_rows:
            self.select_image(int(emb.index[image_rows[0]]))
        elif text_rows:
            self._guarded(setattr, self.state, "prompt", str(emb.sources[text_rows[0]]))

    def _summarise_selection(self, image_rows) -> None:
        """Zero-shot over the selected images: the mean probability of each label, its top-1 count."""
        if not image_rows:
            self.selection_labels.value = "<i>lasso images on the map to see the top labels over them</i>"
            self.selection_top = []
            return
        import torch

        from ..zeroshot import label_embeds, parse_labels, scores

        labels = parse_labels(self.zeroshot.state.labels_text)  # the zero-shot tab's own labels
        state = self.zeroshot.state
        classes = label_embeds(self.model, labels, templates=state.template_set, lang=state.lang)
        vectors = torch.from_numpy(np.asarray(self.embedding.embeddings.vectors[image_rows], dtype=np.float32))
        _, probs = scores(self.model, vectors, classes)
        mean = probs.mean(axis=0)
        top1 = np.bincount(probs.argmax(axis=1), minlength=len(labels))
        order = np.argsort(-mean)[:5]
        self.selection_top = [(labels[i], float(mean[i]), int(top1[i])) for i in order]
        rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{p:.1%}</td><td>{n}</td></tr>"
                       for name, p, n in self.selection_top)
        self.selection_labels.value = (
            f"<b>Map selection: {len(image_rows)} image{'s' if len(image_rows) != 1 else ''}</b> — top labels "
            f"(mean probability, images where it is top-1)<table>{rows}</table>")

    def _on_image_chosen(self, change) -> None:
        """An image chosen in the zero-shot or heatmap tab: highlight it on the map and zoom to it."""
        index = change["new"]
        emb = self.embedding.embeddings
        rows = np.flatnonzero(emb.is_image & (np.asarray(emb.index) == index))
        if len(rows) and int(rows[0]) not in self.embedding.selected_rows:  # not an echo of the map's own selection
            self._guarded(self.embedding.highlight, [int(rows[0])])

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
            self.heads.state.prompt = state.prompt
        elif state.image_index >= 0:
            self.attention.state.image_index = state.image_index
            self.zeroshot.state.image_index = state.image_index
            self.heads.state.image_index = state.image_index
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
            parts.append("click or lasso points on the map to send them to the other tabs")
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
