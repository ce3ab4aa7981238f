"""EmbeddingApp: images and texts in one interactive map (jupyter-scatter: WebGL, pan/zoom, lasso).

* **First picture at once**: a PCA layout (no numba) is drawn as the app opens; UMAP or t-SNE is then
  fitted in a child process (:func:`clipviz.projection.fit_in_background`, the kernel stays free),
  with its progress shown, and swapped in with an animation. A new request cancels the running one.
* **Hover**: an image point shows its thumbnail (≤ 96 px), label and row; a text point its text. The
  browser asks the kernel for the hovered point's record (jupyter-scatter's tooltip protocol); the
  preview is made then, once, and kept (:class:`clipviz.thumbnails.Previews`), so nothing is shipped
  up front and it all works offline (``data:`` URLs).
* **Select**: click, shift-click or lasso. ``selected_rows`` (traitlet, rows of the Embeddings) and
  ``on_select(fn)`` (``fn(rows)``) carry the selection; ``select(rows)`` / ``highlight(rows)`` set it from
  Python (``highlight`` also zooms to the rows).
* **Search**: with a ``model``, a text typed in the search box finds its nearest images (exact cosine,
  :meth:`clipviz.embeddings.Embeddings.search`); the hits are shown as thumbnails and highlighted on the
  map. ``search(query)`` does the same from Python.
* **Colour / size / filter** by modality, label, zero-shot prediction (the nearest text's label),
  correct vs wrong, or any column passed as ``columns={"name": values}``; texts are drawn larger than
  images so the two stay apart whatever the colour.

    >>> app = EmbeddingApp(clipviz.embed(model, images=folder, texts=labels))
    >>> app.selected_rows          # what the user lassoed
"""

from __future__ import annotations

import functools
import html
import threading

import ipywidgets as widgets
import numpy as np
import pandas as pd
import traitlets

from ..embeddings import Embeddings
from ..projection import METHODS, JointLayout, JointPCA, fit_in_background, modality_gap
from ..thumbnails import Previews
from .reporting import show_error

BUILT_IN_COLUMNS = ("modality", "label", "prediction", "correct")
POINT_SIZE = {"image": 4, "text": 10}  # texts larger: visibly different from images in every colouring
_SHOW = ("all", "images", "texts")


@functools.cache
def _scatter_widget_class():
    """jupyter-scatter's widget, answering tooltip requests with a lazily made preview.

    jupyter-scatter 1.0.1 answers the browser's tooltip message with the record of a pandas row, so
    a preview would have to sit in a column for every point up front. This subclass answers the same
    message with ``preview_for(row)`` instead: only hovered points ever get a preview.
    """
    from jscatter.widget import EVENT_TYPES, JupyterScatter, get_record

    class MapScatterWidget(JupyterScatter):
        preview_for = None  # set by EmbeddingApp: row → data: URL

        def _handle_tooltip(self, event: dict):
            index = int(event["index"])
            properties = list(event.get("properties") or [])
            record = get_record(self.data, index)
            preview = self.preview_for(index) if self.preview_for is not None else None
            self.send({"type": EVENT_TYPES["TOOLTIP"], "index": index, "preview": preview,
                       "properties": record[properties].to_dict()})

    return MapScatterWidget


class EmbeddingState(traitlets.HasTraits):
    """What the app shows; knows nothing about widgets."""

    method = traitlets.Unicode("umap")
    n_neighbors = traitlets.Int(15)
    min_dist = traitlets.Float(0.1)
    close_gap = traitlets.Bool(False)
    color_by = traitlets.Unicode("modality")
    show = traitlets.Unicode("all")


class EmbeddingApp(widgets.VBox):
    """An interactive map of an :class:`clipviz.embeddings.Embeddings`.

    ``EmbeddingApp(embeddings)`` or ``EmbeddingApp.from_model(model, images, texts, labels)``.
    ``method``: the final layout ("umap", "pca", "tsne"; PCA is always shown first). ``columns``:
    extra per-row values to colour by (``{"name": sequence of len(embeddings)}``). ``height``: pixels.
    ``model``: the model that made the vectors; it turns on the search box (``search_k`` hits;
    ``from_model`` passes it).

    Traitlets: ``selected_rows`` (list of rows), ``selected_row`` (the first, or -1),
    ``selected_image`` / ``selected_text`` (what the caller passed for the first selected image / text).
    ``on_select(fn)`` registers ``fn(rows)``. ``layout_method`` says which layout is on screen.
    """

    selected_rows = traitlets.List(traitlets.Int())
    selected_row = traitlets.Int(-1)
    selected_image = traitlets.Any(None)
    selected_text = traitlets.Unicode("")
    layout_method = traitlets.Unicode("")

    def __init__(self, embeddings: Embeddings, *, method: str = "umap", n_neighbors: int = 15,
                 min_dist: float = 0.1, close_gap: bool = False, color_by: str = "modality",
                 columns: dict | None = None, random_state: int | None = 0, height: int = 480,
                 preview_side: int = 96, background: bool = True, model=None, search_k: int = 12):
        super().__init__()
        if not isinstance(embeddings, Embeddings):
            raise TypeError(f"EmbeddingApp takes an Embeddings (from clipviz.embed), not {type(embeddings).__name__}")
        if len(embeddings) == 0:
            raise ValueError("there are no points to show: the embeddings are empty")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, not {method!r}")
        self.embeddings = embeddings
        self.model = model
        self.search_k = search_k
        self.hits = None
        self.random_state = random_state
        self.background = background
        self.previews = Previews(embeddings, side=preview_side)
        self.projection: JointLayout | None = None
        self.coords: np.ndarray | None = None
        self.message = ""
        self.last_error: str | None = None
        self._callbacks: list = []
        self._job = None
        self._lock = threading.Lock()
        self._layout_done = threading.Event()
        self.table = self._table(columns or {})
        if color_by not in self.table.columns:
            raise ValueError(f"color_by must be one of {self.color_columns}, not {color_by!r}")
        self.state = EmbeddingState(method=method, n_neighbors=n_neighbors, min_dist=min_dist,
                                    close_gap=close_gap, color_by=color_by)

        self._method = widgets.Dropdown(options=list(METHODS), value=method, description="layout")
        self._neighbors = widgets.IntSlider(value=n_neighbors, min=2, max=100, description="neighbours",
                                            continuous_update=False)
        self._min_dist = widgets.FloatSlider(value=min_dist, min=0.0, max=1.0, step=0.05, description="min dist",
                                             continuous_update=False)
        self._gap = widgets.Checkbox(value=close_gap, description="remove modality gap", indent=False)
        self._color = widgets.Dropdown(options=self.color_columns, value=color_by, description="colour by")
        self._show = widgets.Dropdown(options=list(_SHOW), value="all", description="show")
        self._status = widgets.HTML()
        self._progress = widgets.FloatProgress(value=0.0, min=0.0, max=1.0, description="layout",
                                               layout=widgets.Layout(visibility="hidden"))
        self._details = widgets.HTML(value="<i>hover a point to see it; click or lasso to select</i>")
        self._errors = widgets.Output()
        self._query = widgets.Text(placeholder="search: a text, e.g. 'a red circle' (Enter)", description="search",
                                   continuous_update=False, disabled=model is None,
                                   layout=widgets.Layout(width="420px"))
        if model is None:
            self._query.placeholder = "search needs a model: EmbeddingApp(..., model=model)"
        self._query.observe(lambda change: self._guarded(self.search, change["new"]), names="value")
        self._hits = widgets.HTML()
        for control, name in ((self._method, "method"), (self._neighbors, "n_neighbors"),
                              (self._min_dist, "min_dist"), (self._gap, "close_gap"), (self._color, "color_by"),
                              (self._show, "show")):
            widgets.link((control, "value"), (self.state, name))
        self.state.observe(self._on_params, names=["method", "n_neighbors", "min_dist", "close_gap"])
        self.state.observe(lambda change: self._guarded(self._apply_color), names="color_by")
        self.state.observe(lambda change: self._guarded(self._apply_filter), names="show")

        self._first_layout()
        self._scatter = self._make_scatter(height)
        self.map = self._scatter.widget
        self.map.preview_for = self.previews.url
        self.map.observe(self._on_browser_selection, names="selection")
        self._sync_controls()
        controls = widgets.HBox([widgets.VBox([self._method, self._neighbors, self._min_dist]),
                                 widgets.VBox([self._gap, self._color, self._show])])
        self.children = [controls, self._query, widgets.HBox([self._status, self._progress]), self.map,
                         self._details, self._hits, self._errors]
        self.add_class("clipviz-map")
        if method != "pca":
            self._guarded(self.request_layout)

    @classmethod
    def from_model(cls, model, images=None, texts=None, labels=None, *, cache=None, **options) -> EmbeddingApp:
        """Embed ``images`` and ``texts`` with ``model`` (see :func:`clipviz.embed`) and open the app."""
        from ..embeddings import embed

        options.setdefault("model", model)
        return cls(embed(model, images=images, texts=texts, labels=labels, cache=cache), **options)

    # ------------------------------------------------------------------ public actions
    @property
    def color_columns(self) -> list[str]:
        return [c for c in self.table.columns if c not in ("x", "y", "row", "text", "preview")]

    def on_select(self, callback) -> None:
        """Call ``callback(rows)`` (a list of Embeddings rows, possibly empty) whenever the selection changes."""
        self._callbacks.append(callback)

    def select(self, rows) -> None:
        """Select ``rows`` (an int, a list of ints; ``-1``, ``None`` or ``[]`` clears), as a lasso would."""
        self._guarded(self._select, rows, False)

    def highlight(self, rows, zoom: bool = True) -> None:
        """Select ``rows`` and zoom the map to them (what a search result or another tab uses)."""
        self._guarded(self._select, rows, zoom)

    def search(self, query: str, k: int | None = None):
        """Find the ``k`` (default ``search_k``) rows nearest to the text ``query``, show them as thumbnails
        under the map and highlight (select and zoom to) them; returns the :class:`clipviz.search.Hits`.
        An empty query clears the hits."""
        if not str(query).strip():
            self.hits = None
            self._hits.value = ""
            return None
        if self.model is None:
            raise ValueError("searching by text needs the model that made these vectors: "
                             "EmbeddingApp(embeddings, model=model)")
        hits = self.embeddings.search(str(query), k=k or self.search_k, model=self.model)
        self.hits = hits
        cards = "".join(
            f'<figure style="display:inline-block;margin:2px;text-align:center;font-size:11px">'
            f'<img src="{self.previews.url(row)}" style="height:64px" title="row {row}"/>'
            f'<figcaption>{html.escape(str(label if label is not None else source))[:24]} {score:.2f}</figcaption>'
            f'</figure>'
            for row, score, source, label in zip(hits.rows.tolist(), hits.scores.tolist(), hits.sources, hits.labels))
        self._hits.value = (f"<b>{len(hits)} nearest to “{html.escape(str(query))}”</b><br>{cards}"
                            if len(hits) else f"<i>nothing found for “{html.escape(str(query))}”</i>")
        self.highlight(hits.rows.tolist(), zoom=True)
        return hits

    def color_by(self, column: str) -> None:
        """Colour the points by ``column`` (one of :attr:`color_columns`)."""
        if column not in self.color_columns:
            raise ValueError(f"color_by must be one of {self.color_columns}, not {column!r}")
        self.state.color_by = column

    def request_layout(self, method: str | None = None) -> None:
        """Compute the layout ``method`` (default: the chosen one) in the background and swap it in.

        A request while another runs cancels that one: never two layouts racing.
        """
        if method is not None:
            self.state.method = method  # observe → request_layout() again
            return
        s = self.state
        if s.method == "pca" and not s.close_gap and self.projection is not None and self.layout_method == "pca":
            self._cancel_job()
            self._layout_done.set()
            return
        layout = JointLayout(s.method, n_neighbors=s.n_neighbors, min_dist=s.min_dist, close_gap=s.close_gap,
                             random_state=self.random_state)
        self._cancel_job()
        self._layout_done.clear()
        if not self.background or s.method == "pca":
            layout.fit(self.embeddings)
            self._swap_in(layout.embedding_, layout.method_, layout.message_)
            self.projection = layout
            return
        self._progress.layout.visibility = "visible"
        self._progress.value = 0.0
        self._progress.description = s.method
        job = fit_in_background(layout, self.embeddings, on_progress=self._on_progress,
                                on_done=lambda result: self._on_layout_done(job, result),
                                on_error=lambda message: self._on_layout_error(job, message))
        self._job = job
        self._show_status(computing=f"{s.method} in the background")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the requested layout is on the map (scripts, tests); False on timeout."""
        return self._layout_done.wait(timeout)

    def close(self) -> None:
        self._cancel_job()
        super().close()

    # ------------------------------------------------------------------ layout
    def _first_layout(self) -> None:
        first = JointPCA(close_gap=self.state.close_gap, random_state=self.random_state).fit(self.embeddings)
        self.projection = first
        self._set_coords(first.embedding_, first.method_, first.message_)
        if self.state.method == "pca":
            self._layout_done.set()

    def _set_coords(self, embedding: np.ndarray, method: str, message: str) -> None:
        coords = np.array(embedding, dtype=np.float32)
        self.valid = np.isfinite(coords).all(axis=1)
        if self.valid.any():  # dropped rows sit at the centre, hidden by the filter
            coords[~self.valid] = np.nanmean(coords[self.valid], axis=0)
        self.coords = coords
        self.layout_method = method
        self.message = message
        self.table["x"], self.table["y"] = coords[:, 0], coords[:, 1]
        self._show_status()

    def _swap_in(self, embedding, method: str, message: str) -> None:
        with self._lock:
            self._set_coords(embedding, method, message)
            self._scatter.xy(self.coords[:, 0], self.coords[:, 1], animate=True)
            self._apply_filter()
            self._progress.layout.visibility = "hidden"
            self._layout_done.set()

    def _cancel_job(self) -> None:
        if self._job is not None:
            self._job.cancel()
            self._job = None

    def _on_progress(self, fraction: float, what: str) -> None:
        self._progress.value = float(fraction)
        self._show_status(computing=what)

    def _on_layout_done(self, job, result: dict) -> None:
        if job is not self._job:  # superseded while it finished
            return
        self._job = None
        self._guarded(self._swap_in, result["embedding"], result["method"], result["message"])

    def _on_layout_error(self, job, message: str) -> None:
        if job is not self._job:
            return
        self._job = None
        self._progress.layout.visibility = "hidden"
        self._layout_done.set()
        self._report(RuntimeError(message))

    def _on_params(self, change) -> None:
        self._sync_controls()
        self._guarded(self.request_layout)

    def _sync_controls(self) -> None:
        is_umap = self.state.method == "umap"
        self._neighbors.disabled = not is_umap  # PCA and t-SNE have no such parameters
        self._min_dist.disabled = not is_umap
        self._gap.disabled = not (self.embeddings.n_images and self.embeddings.n_texts)

    # ------------------------------------------------------------------ the table and the scatter
    def _table(self, columns: dict) -> pd.DataFrame:
        emb = self.embeddings
        n = len(emb)
        labels = np.array(["(none)" if label is None else str(label) for label in emb.labels], dtype=object)
        table = pd.DataFrame({
            "x": np.zeros(n, np.float32), "y": np.zeros(n, np.float32),
            "modality": pd.Categorical(emb.modality, categories=["image", "text"]),
            "label": pd.Categorical(labels),
            "row": np.arange(n),
            "text": [str(s) for s in emb.sources],
        })
        prediction, correct = zero_shot_columns(emb)
        if prediction is not None:
            table["prediction"] = pd.Categorical(prediction)
            table["correct"] = pd.Categorical(correct, categories=["correct", "wrong", "unlabelled", "text"])
        for name, values in columns.items():
            if name in table.columns:
                raise ValueError(f"column {name!r} is already in the map; choose another name")
            values = list(values)
            if len(values) != n:
                raise ValueError(f"column {name!r} has {len(values)} values for {n} rows")
            numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                          for v in values)
            table[name] = np.asarray(values, dtype=np.float32) if numeric else pd.Categorical([str(v) for v in values])
        return table

    def _make_scatter(self, height: int):
        import jscatter

        scatter = jscatter.Scatter("x", "y", data=self.table, height=height, axes=False)
        scatter.size(by="modality", map=POINT_SIZE)
        # no scatter.opacity(constant): in jupyter-scatter 1.0.1 a constant opacity draws the points almost
        # invisible (seen in Chromium); its default, density-based opacity also suits 100k points better
        scatter.legend(True, position="top-right", size="small")
        scatter.tooltip(True, properties=["color", "label", "row", "text"], preview="text",
                        preview_type="image", preview_image_size="contain", preview_image_height=96,
                        preview_image_background_color="white")
        scatter.lasso(initiator=True)
        scatter.zoom(animation=500, padding=0.5)
        self._apply_color(scatter)
        widget = scatter.widget
        widget.__class__ = _scatter_widget_class()  # see _scatter_widget_class: lazy previews
        self._apply_filter(scatter)
        return scatter

    def _apply_color(self, scatter=None) -> None:
        scatter = scatter or self._scatter
        column = self.state.color_by
        if column == "modality":
            scatter.color(by="modality", map={"image": "#4c72b0", "text": "#dd8452"})
        elif column == "correct":
            scatter.color(by="correct", map={"correct": "#2ca02c", "wrong": "#d62728", "unlabelled": "#999999",
                                             "text": "#dd8452"})
        elif isinstance(self.table[column].dtype, pd.CategoricalDtype):
            scatter.color(by=column, map="auto")  # jupyter-scatter's categorical palette
        else:
            scatter.color(by=column, map="viridis")

    def _apply_filter(self, scatter=None) -> None:
        scatter = scatter or self._scatter
        keep = self.valid.copy()
        if self.state.show == "images":
            keep &= self.embeddings.is_image
        elif self.state.show == "texts":
            keep &= self.embeddings.is_text
        scatter.filter(None if keep.all() else np.flatnonzero(keep))

    # ------------------------------------------------------------------ selection
    def _select(self, rows, zoom: bool) -> None:
        rows = _as_rows(rows, len(self.embeddings))
        self._scatter.selection(rows if rows else None)
        if zoom and rows:
            self._scatter.zoom(to=rows)
        self._publish(rows)

    def _on_browser_selection(self, change) -> None:
        new = change["new"]
        rows = [] if new is None else [int(r) for r in np.asarray(new).ravel()]
        if rows != list(self.selected_rows):
            self._guarded(self._publish, rows)

    def _publish(self, rows: list[int]) -> None:
        if rows == list(self.selected_rows):
            return
        emb = self.embeddings
        self.selected_rows = rows
        self.selected_row = rows[0] if rows else -1
        images = [r for r in rows if emb.modality[r] == "image"]
        texts = [r for r in rows if emb.modality[r] == "text"]
        if images:
            self.selected_image = emb.inputs[images[0]] if emb.inputs else emb.sources[images[0]]
        if texts:
            self.selected_text = str(emb.sources[texts[0]])
        self._details.value = self._describe(rows, images, texts)
        for callback in self._callbacks:
            callback(list(rows))

    def _describe(self, rows, images, texts) -> str:
        if not rows:
            return "<i>hover a point to see it; click or lasso to select</i>"
        emb = self.embeddings
        parts = [f"<b>{len(rows)} selected</b>: {len(images)} images, {len(texts)} texts"]
        labels = pd.Series([emb.labels[r] for r in rows if emb.labels[r] is not None], dtype=object)
        if len(labels):
            top = labels.value_counts().head(3)
            parts.append("labels: " + ", ".join(f"{html.escape(str(k))} ({v})" for k, v in top.items()))
        if len(rows) == 1:
            r = rows[0]
            parts.append(f"row {r}: {html.escape(str(emb.sources[r]))}")
        return " · ".join(parts)

    # ------------------------------------------------------------------ messages
    def _show_status(self, computing: str | None = None) -> None:
        emb = self.embeddings
        parts = [f"{emb.n_images} images + {emb.n_texts} texts", f"showing <b>{self.layout_method}</b>"]
        if computing:
            parts.append(f"computing {html.escape(computing)} …")
        if emb.n_images and emb.n_texts and self.projection is not None:
            gap = self.projection.gap_ or modality_gap(emb)
            removed = " (removed before projecting)" if self.state.close_gap else ""
            parts.append(f"modality gap ‖Δ‖ = <b>{gap.norm:.3f}</b>{removed}")
        if self.message:
            parts.append(f"<i>{html.escape(self.message)}</i>")
        self._status.value = " · ".join(parts)

    def _guarded(self, function, *args):
        """Run a callback; show a failure as a plain message inside the app instead of losing it."""
        try:
            function(*args)
        except Exception as error:  # noqa: BLE001 - anything a user's data can raise belongs in the message
            self._report(error)
            return
        show_error(self, None)

    def _report(self, error: Exception) -> None:
        show_error(self, error)  # the format every app shares (clipviz.widgets.reporting)


def zero_shot_columns(embeddings: Embeddings):
    """Per row: the zero-shot prediction (the label of the image's most similar text; texts: their own
    label) and ``"correct"`` / ``"wrong"`` / ``"unlabelled"`` / ``"text"``; ``(None, None)`` without texts."""
    emb = embeddings
    text_rows = np.flatnonzero(emb.is_text)
    if len(text_rows) == 0:
        return None, None
    text_names = [str(emb.labels[r]) if emb.labels[r] is not None else str(emb.sources[r]) for r in text_rows]
    prediction = np.array(["text"] * len(emb), dtype=object)
    correct = np.array(["text"] * len(emb), dtype=object)
    for i, r in enumerate(text_rows):
        prediction[r] = text_names[i]
    text_vectors = np.asarray(emb.vectors[text_rows], dtype=np.float32)
    image_rows = np.flatnonzero(emb.is_image)
    for start in range(0, len(image_rows), 8192):
        rows = image_rows[start:start + 8192]
        scores = np.asarray(emb.vectors[rows], dtype=np.float32) @ text_vectors.T
        scores = np.where(np.isfinite(scores), scores, -np.inf)
        best = scores.argmax(axis=1)
        for r, b in zip(rows, best):
            prediction[r] = text_names[b]
            label = emb.labels[r]
            correct[r] = "unlabelled" if label is None else ("correct" if str(label) == text_names[b] else "wrong")
    return prediction, correct


def _as_rows(rows, n: int) -> list[int]:
    if rows is None:
        return []
    if isinstance(rows, (int, np.integer)):
        rows = [] if int(rows) == -1 else [int(rows)]
    rows = [int(r) for r in np.asarray(rows).ravel()]
    bad = [r for r in rows if not 0 <= r < n]
    if bad:
        raise IndexError(f"there is no point {bad[0]}: choose 0 … {n - 1}")
    return list(dict.fromkeys(rows))
