"""EmbeddingApp: images and texts in one map, with UMAP/PCA/t-SNE controls and the modality gap.

Click a point (with the ipympl backend, ``%matplotlib widget``) or type its row number to see the
image or text and its nearest texts. The selected image is published as the traitlet
``selected_image`` (and to ``on_select`` callbacks), so a Dashboard can send it to the zero-shot and
heatmap views: ``traitlets.dlink((embedding_app, "selected_image"), (zeroshot_app, "image"))``.
"""

from __future__ import annotations

import html
import io
import time

import ipywidgets as widgets
import numpy as np
import traitlets
from IPython.display import clear_output, display

from ..embeddings import Embeddings
from ..projection import METHODS, JointUMAP, modality_gap

_PREVIEW_SIDE = 160  # pixels of the selected-image preview


class EmbeddingState(traitlets.HasTraits):
    """What the app shows; knows nothing about widgets."""

    method = traitlets.Unicode("umap")
    n_neighbors = traitlets.Int(15)
    min_dist = traitlets.Float(0.1)
    close_gap = traitlets.Bool(False)
    color_by = traitlets.Unicode("modality")
    selected_row = traitlets.Int(-1)


class EmbeddingApp(widgets.VBox):
    """An interactive map of an :class:`clipviz.embeddings.Embeddings`.

    ``EmbeddingApp(embeddings)`` or ``EmbeddingApp.from_model(model, images, texts, labels)``.
    Traitlets for linking: ``selected_row``, ``selected_image`` (what the caller passed for the image:
    path, PIL image or array), ``selected_text``. ``on_select(fn)`` registers ``fn(row, item, modality)``.
    """

    selected_row = traitlets.Int(-1)
    selected_image = traitlets.Any(None)
    selected_text = traitlets.Unicode("")

    def __init__(self, embeddings: Embeddings, *, method: str = "umap", n_neighbors: int = 15,
                 min_dist: float = 0.1, close_gap: bool = False, color_by: str = "modality",
                 random_state: int | None = 0, thumbnails: bool | None = None, figsize=(6.5, 5.5)):
        super().__init__()
        if not isinstance(embeddings, Embeddings):
            raise TypeError(f"EmbeddingApp takes an Embeddings (from clipviz.embed), not {type(embeddings).__name__}")
        self.embeddings = embeddings
        self.random_state = random_state
        self.thumbnails = thumbnails
        self.projection: JointUMAP | None = None
        self.coords: np.ndarray | None = None
        self.last_error: str | None = None
        self._callbacks: list = []
        self.state = EmbeddingState(method=method, n_neighbors=n_neighbors, min_dist=min_dist,
                                    close_gap=close_gap, color_by=color_by)

        self._method = widgets.Dropdown(options=list(METHODS), value=method, description="method")
        self._neighbors = widgets.IntSlider(value=n_neighbors, min=2, max=100, description="neighbours",
                                            continuous_update=False)
        self._min_dist = widgets.FloatSlider(value=min_dist, min=0.0, max=1.0, step=0.05, description="min dist",
                                             continuous_update=False)
        self._gap = widgets.Checkbox(value=close_gap, description="remove modality gap", indent=False)
        self._color = widgets.Dropdown(options=["modality", "label"], value=color_by, description="colour by")
        self._row = widgets.BoundedIntText(value=-1, min=-1, max=len(embeddings) - 1, description="point")
        self._status = widgets.HTML()
        self._preview = widgets.Image(format="png", layout=widgets.Layout(width=f"{_PREVIEW_SIDE}px"))
        self._details = widgets.HTML(value="<i>click a point (or type its number) to see it</i>")
        self._errors = widgets.Output()
        for control, name in ((self._method, "method"), (self._neighbors, "n_neighbors"),
                              (self._min_dist, "min_dist"), (self._gap, "close_gap"), (self._color, "color_by")):
            widgets.link((control, "value"), (self.state, name))
        self._row.observe(lambda change: self.select(change["new"]), names="value")
        self.state.observe(self._on_params, names=["method", "n_neighbors", "min_dist", "close_gap"])
        self.state.observe(lambda change: self._guarded(self._draw), names="color_by")

        import matplotlib.pyplot as plt

        with plt.ioff():  # the app shows the figure itself; no second copy below the cell
            self.figure, self.ax = plt.subplots(figsize=figsize)
        self._interactive = isinstance(self.figure.canvas, widgets.DOMWidget)  # ipympl
        self._figure_out = widgets.Output()
        self.figure.canvas.mpl_connect("button_press_event", self._on_click)
        figure_area = self.figure.canvas if self._interactive else self._figure_out

        self._sync_controls()
        controls = widgets.HBox([widgets.VBox([self._method, self._neighbors, self._min_dist]),
                                 widgets.VBox([self._gap, self._color, self._row])])
        side = widgets.VBox([self._preview, self._details], layout=widgets.Layout(width="240px"))
        self.children = [controls, self._status, widgets.HBox([figure_area, side]), self._errors]
        self._guarded(self._refit)

    @classmethod
    def from_model(cls, model, images=None, texts=None, labels=None, *, cache=None, **options) -> EmbeddingApp:
        """Embed ``images`` and ``texts`` with ``model`` (see :func:`clipviz.embed`) and open the app."""
        from ..embeddings import embed

        return cls(embed(model, images=images, texts=texts, labels=labels, cache=cache), **options)

    # ------------------------------------------------------------------ public actions
    def on_select(self, callback) -> None:
        """Call ``callback(row, item, modality)`` whenever a point is selected."""
        self._callbacks.append(callback)

    def select(self, row: int) -> None:
        """Select ``row`` (-1 clears the selection)."""
        self._guarded(self._select, int(row))

    # ------------------------------------------------------------------ internals
    def _guarded(self, function, *args):
        """Run a callback; show a failure as a plain message inside the app instead of losing it."""
        try:
            function(*args)
            self.last_error = None
        except Exception as error:  # noqa: BLE001 - anything a user's data can raise belongs in the message
            self.last_error = f"{type(error).__name__}: {error}"
            with self._errors:
                clear_output(wait=True)
                print(f"Could not update the map: {error}")
            return
        with self._errors:
            clear_output()

    def _sync_controls(self) -> None:
        is_umap = self.state.method == "umap"
        self._neighbors.disabled = not is_umap  # PCA and t-SNE have no such parameters
        self._min_dist.disabled = not is_umap
        self._gap.disabled = not (self.embeddings.n_images and self.embeddings.n_texts)

    def _on_params(self, change) -> None:
        self._sync_controls()
        self._guarded(self._refit)

    def _refit(self) -> None:
        s = self.state
        started = time.perf_counter()
        self.projection = JointUMAP(s.method, n_neighbors=s.n_neighbors, min_dist=s.min_dist, close_gap=s.close_gap,
                                    random_state=self.random_state)
        self.coords = self.projection.fit_transform(self.embeddings)
        seconds = time.perf_counter() - started
        gap_text = ""
        if self.embeddings.n_images and self.embeddings.n_texts:
            gap = self.projection.gap_ or modality_gap(self.embeddings)
            removed = " (removed before projecting)" if s.close_gap else ""
            gap_text = f" · modality gap ‖Δ‖ = <b>{gap.norm:.3f}</b>{removed}"
        self._status.value = (f"{self.embeddings.n_images} images + {self.embeddings.n_texts} texts · "
                              f"{s.method} in {seconds:.1f} s{gap_text}")
        self._draw()

    def _draw(self) -> None:
        if self.coords is None:
            return
        from ..plotting.embeddings import plot_embedding_map

        self.ax.clear()
        plot_embedding_map(self.coords, self.embeddings, ax=self.ax, color_by=self.state.color_by,
                           thumbnails=self.thumbnails)
        self._ring = self.ax.scatter([], [], s=220, facecolors="none", edgecolors="black", linewidths=1.8, zorder=7)
        self._place_ring()
        self._show()

    def _place_ring(self) -> None:
        row = self.state.selected_row
        offsets = self.coords[row : row + 1, :2] if row >= 0 and self.coords is not None else np.empty((0, 2))
        self._ring.set_offsets(offsets)

    def _show(self) -> None:
        if self._interactive:
            self.figure.canvas.draw_idle()
        elif _in_kernel():  # outside a kernel (tests, scripts) there is nowhere to display to
            with self._figure_out:
                clear_output(wait=True)
                display(self.figure)

    def _on_click(self, event) -> None:
        if event.inaxes is not self.ax or event.xdata is None or self.coords is None:
            return
        distances = np.hypot(self.coords[:, 0] - event.xdata, self.coords[:, 1] - event.ydata)
        self.select(int(np.argmin(distances)))

    def _select(self, row: int) -> None:
        if not -1 <= row < len(self.embeddings):
            raise IndexError(f"there is no point {row}: choose 0 … {len(self.embeddings) - 1}")
        self.state.selected_row = row
        self.selected_row = row
        if self._row.value != row:
            self._row.value = row  # observe → select(row) again, a no-op
        if self.coords is not None:
            self._place_ring()
            self._show()
        if row < 0:
            self._preview.value = b""
            self._details.value = "<i>click a point (or type its number) to see it</i>"
            return
        emb = self.embeddings
        modality = str(emb.modality[row])
        item = emb.inputs[row] if emb.inputs else emb.sources[row]
        label = emb.labels[row]
        lines = [f"<b>{modality} {int(emb.index[row])}</b>"]
        if label is not None:
            lines.append(f"label: {html.escape(str(label))}")
        if modality == "image":
            self._preview.value = _preview_png(item, emb.thumbnail(row))
            lines.append(html.escape(str(emb.sources[row])))
            if emb.n_texts:
                lines.append("closest texts:<br>" + "<br>".join(
                    f"{score:.3f} {html.escape(text)}" for text, score in _closest_texts(emb, row)))
            self.selected_image = item
        else:
            self._preview.value = b""
            lines.insert(1, f"“{html.escape(str(item))}”")
            self.selected_text = str(item)
        self._details.value = "<br>".join(lines)
        for callback in self._callbacks:
            callback(row, item, modality)


def _in_kernel() -> bool:
    from IPython import get_ipython

    return get_ipython() is not None


def _closest_texts(embeddings: Embeddings, row: int, k: int = 3):
    text_rows = np.flatnonzero(embeddings.is_text)
    scores = np.asarray(embeddings.vectors[text_rows]) @ np.asarray(embeddings.vectors[row])
    best = np.argsort(-scores)[:k]
    return [(str(embeddings.sources[text_rows[i]]), float(scores[i])) for i in best]


def _preview_png(item, thumbnail) -> bytes:
    """PNG bytes of the selected image: the original when it can be loaded, else its thumbnail."""
    from PIL import Image

    from ..images import load_image

    try:
        image = load_image(item)
    except Exception:  # noqa: BLE001 - a moved file or an odd object: the thumbnail still shows it
        if thumbnail is None:
            return b""
        image = Image.fromarray(np.asarray(thumbnail))
    image = image.copy()
    image.thumbnail((_PREVIEW_SIDE, _PREVIEW_SIDE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
