"""AttentionApp: pick an image, type a prompt, and see where the model looks, layer by layer.

The model runs only when the image or the prompt changes (one :func:`clipviz.heatmaps.capture_attention`
per pair, kept in a small cache); the method, layer, head, opacity and sink controls recompute the
map from that capture with :func:`clipviz.heatmaps.heatmap_from_capture` and update the figure's
artists in place (``set_data``), so they re-render in milliseconds.

The picture is an ``ipywidgets.Image`` holding a JPEG: the map is blended over the photo with numpy
at display resolution (the same blend as ``Heatmap.overlay()``), which takes a few milliseconds,
needs no ``ipympl`` and works in every Jupyter frontend and in exported notebooks. The layers ×
heads grid, redrawn only for a new image, is a matplotlib figure on an Agg canvas.
"""

from __future__ import annotations

import dataclasses
import html
from collections import OrderedDict

import ipywidgets as widgets
import numpy as np
import traitlets
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from ..errors import InvalidArgument
from ..heatmaps import HEATMAP_METHODS, capture_attention, heatmap_from_capture, layer_head_grids
from ..images import image_label, load_image
from ..plotting.encode import image_bytes
from ..plotting.heatmaps import blend, colour_table
from .reporting import check_choice, check_index, refuse_invalid, show_error

_CAPTURES_KEPT = 8  # (image, prompt) pairs whose captures stay in memory
_DISPLAY_SIDE = 320  # pixels, the longer side of the picture in the app


class AttentionState(traitlets.HasTraits):
    """What the app shows; knows nothing about widgets."""

    image_index = traitlets.Int(0)
    prompt = traitlets.Unicode("")
    method = traitlets.Unicode("relevance")  # one of HEATMAP_METHODS: checked by the app, which reports a refusal
    layer = traitlets.Int(0)  # "layer" for attention, "start layer" for rollout and relevance
    head = traitlets.Union([traitlets.Int(), traitlets.Unicode()], default_value="mean")
    opacity = traitlets.Float(0.5)
    exclude_sinks = traitlets.Bool(False)


def _display_frame(capture, side: int):
    """The picture scaled so its longer side is ``side`` pixels, and the crop geometry scaled with it.

    Scaling ``original_size`` and ``crop_box`` together keeps the map exactly where
    ``Heatmap.image_map`` puts it, only sampled at the display's resolution.
    """
    width, height = capture.image.size
    scale = side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resample = Image.NEAREST if scale > 1 else Image.BILINEAR  # small images stay crisp
    base = np.asarray(capture.image.resize(size, resample))
    sx, sy = size[0] / width, size[1] / height
    x0, y0, x1, y1 = capture.geometry.crop_box
    geometry = dataclasses.replace(capture.geometry, original_size=size, crop_box=(x0 * sx, y0 * sy, x1 * sx, y1 * sy))
    return geometry, base


class AttentionApp(widgets.VBox):
    """Image picker, prompt box, method, layer slider, head selector (with mean), opacity; and a
    grid of every layer × head's CLS attention for the chosen image.

    ``images``: image sources (paths, PIL images, arrays); default: six held-out two-object scenes
    of the shapes world. ``labels``: names for the picker. ``prompt``: the starting text.

    The methods and their controls come from ``clipviz.heatmaps.HEATMAP_METHODS``: the layer slider
    drives each record's ``slider`` option (``layer`` of ``attention``, ``start_layer`` of
    ``rollout`` and ``relevance``; Grad-ECLIP always uses the last layer), the head selector a
    ``head`` option. ``app.state`` holds the choices (set them from code too); ``app.heatmap`` is the
    :class:`~clipviz.heatmaps.Heatmap` on show; errors appear in the app, under the controls.

    For an image classifier (``CLIPForImageClassification``) the prompt box is a menu of its classes
    (``state.prompt`` is the chosen label; ``""`` explains the predicted class).

        >>> AttentionApp(clipviz.load(), images=["cat.jpg", "dog.jpg"], prompt="a photo of a cat")
    """

    def __init__(self, model, images=None, *, labels=None, prompt: str | None = None, method: str = "relevance"):
        if images is None:
            from ..heatmap_eval import shapes_queries

            queries = shapes_queries(6)
            images = [image for image, _, _ in queries]
            prompt = queries[0][1] if prompt is None else prompt
        sources = list(images) if isinstance(images, (list, tuple)) else [images]
        if not sources:
            raise ValueError("AttentionApp needs at least one image")
        if method not in HEATMAP_METHODS:
            raise InvalidArgument("method", f"{method!r} is not one of {', '.join(HEATMAP_METHODS)}")
        self.model = model
        self.images = [load_image(source) for source in sources]
        labels = list(labels) if labels is not None else [image_label(s, i) for i, s in enumerate(sources)]
        self.n_layers, self.n_heads = model.n_layers("vision"), model.n_heads("vision")
        self.state = AttentionState(prompt=prompt or "", method=method, layer=0)
        self._captures: OrderedDict = OrderedDict()
        self.capture = None
        self.heatmap = None
        self.last_error: str | None = None
        # values set from code are checked before the state takes them; a refusal shows in the app
        refuse_invalid(self, self.state, {
            "image_index": check_index("image_index", lambda: len(self.images), "image"),
            "method": check_choice("method", lambda: tuple(HEATMAP_METHODS)),
            "layer": check_index("layer", lambda: self.n_layers, "layer"),
            "head": check_choice("head", lambda: ["mean", *range(self.n_heads)]),
            "opacity": _check_opacity,
        })

        self._image_picker = widgets.Dropdown(options=[(l, i) for i, l in enumerate(labels)], description="image")
        if getattr(model, "is_classifier", False):
            self.state.prompt = prompt if prompt in model.labels else ""
            self._prompt = widgets.Dropdown(options=[("predicted class", "")] + [(label, label) for label in model.labels],
                                            value=self.state.prompt, description="class")
        else:
            self._prompt = widgets.Text(value=self.state.prompt, description="prompt", continuous_update=False,
                                        placeholder="a text to explain (needed for relevance, Grad-ECLIP)")
            if "text" not in getattr(model, "towers", ("text",)):
                self.state.prompt, self._prompt.value = "", ""
                self._prompt.disabled, self._prompt.placeholder = True, "a vision tower alone: no text to explain"
        self._method = widgets.Dropdown(options=[(r.label, r.name) for r in HEATMAP_METHODS.values()], value=method,
                                        description="method")
        self._layer = widgets.IntSlider(min=0, max=self.n_layers - 1, value=0, description="start layer",
                                        continuous_update=False)
        self._head = widgets.Dropdown(options=[("mean", "mean")] + [(str(h), h) for h in range(self.n_heads)],
                                      value="mean", description="head")
        self._opacity = widgets.FloatSlider(min=0.0, max=1.0, step=0.05, value=0.5, description="opacity",
                                            continuous_update=False)
        self._sinks = widgets.Checkbox(value=False, description="exclude sink tokens", indent=False)
        self._view = widgets.Image(format="jpeg")
        self._tokens = widgets.HTML()
        self._caption = widgets.HTML()
        self._grid_view = widgets.Image(format="png")
        self._errors = widgets.Output()
        for widget, trait in [(self._image_picker, "image_index"), (self._prompt, "prompt"), (self._method, "method"),
                              (self._layer, "layer"), (self._head, "head"), (self._opacity, "opacity"),
                              (self._sinks, "exclude_sinks")]:
            widgets.link((widget, "value"), (self.state, trait))

        self._display = None  # (geometry at display size, picture at display size)
        self._colours = colour_table("jet")
        self._grid_figure = Figure(dpi=72)
        FigureCanvasAgg(self._grid_figure)

        controls = widgets.VBox([self._image_picker, self._prompt, self._method, self._layer, self._head,
                                 self._opacity, self._sinks])
        grid_box = widgets.Accordion(children=[self._grid_view], titles=("all layers × heads (CLS attention)",),
                                     selected_index=0)
        picture = widgets.VBox([self._view, self._caption, self._tokens])
        super().__init__([widgets.HBox([controls, picture]), grid_box, self._errors])

        self.state.observe(self._on_input, names=["image_index", "prompt"])
        self.state.observe(self._on_view, names=["method", "layer", "head", "opacity", "exclude_sinks"])
        self._on_input()

    # ------------------------------------------------------------------ callbacks
    def _report(self, error: Exception | None):
        show_error(self, error)  # the format every app shares (clipviz.widgets.reporting)

    def _on_input(self, change=None):
        """A new image or prompt: run the model once (or reuse a cached run), then redraw everything."""
        try:
            self.capture = self._capture(self.state.image_index, self.state.prompt.strip())
            self._draw_grid()
            self._draw(new_image=True)
            self._report(None)
        except Exception as error:  # shown in the app, never lost in the void
            self._report(error)

    def _on_view(self, change=None):
        """Method, layer, head, opacity or sink choice: recompute from the capture; no model run."""
        try:
            self._draw(new_image=False)
            self._report(None)
        except Exception as error:
            self._report(error)

    # ------------------------------------------------------------------ compute
    def _capture(self, index: int, prompt: str):
        if self.model.hooks_in_use():  # a hooked run answers for itself only: neither read nor kept
            return self._run(index, prompt)
        key = (index, prompt, self.model.weights_version())  # any weight edit is a new run
        if key in self._captures:
            self._captures.move_to_end(key)
            return self._captures[key]
        capture = self._run(index, prompt)
        self._captures[key] = capture
        while len(self._captures) > _CAPTURES_KEPT:
            self._captures.popitem(last=False)
        return capture

    def _run(self, index: int, prompt: str):
        if getattr(self.model, "is_classifier", False):  # explain a class logit: the chosen or predicted class
            return capture_attention(self.model, self.images[index], target=prompt or None,
                                     grad_eclip_layers=[self.n_layers - 1])
        return capture_attention(self.model, self.images[index], prompt or None,
                                 grad_eclip_layers=[self.n_layers - 1] if prompt else [])

    def _options(self) -> dict:
        """The method's options that the controls set (the others keep their defaults)."""
        record = HEATMAP_METHODS[self.state.method]
        options = {record.slider: self.state.layer} if record.slider else {}
        if "head" in record.options:
            options["head"] = self.state.head
        return options

    # ------------------------------------------------------------------ drawing
    def _draw(self, new_image: bool):
        state = self.state
        record = HEATMAP_METHODS[state.method]
        self._layer.description = (record.slider or "layer").replace("_", " ")
        self._layer.disabled = record.slider is None
        self._head.disabled = "head" not in record.options
        if record.needs_text and self.capture.text is None:
            raise ValueError(f"{record.label} explains an image–text match: type a prompt")
        self.heatmap = heatmap_from_capture(self.capture, state.method, exclude_sinks=state.exclude_sinks,
                                            **self._options())
        if new_image or self._display is None:
            self._display = _display_frame(self.capture, _DISPLAY_SIDE)
        geometry, base = self._display
        # the same blend as Heatmap.overlay(), at display resolution: a few ms per move
        frame = blend(base, geometry.grid_to_image(self.heatmap.grid), state.opacity, self._colours)
        self._view.value = image_bytes(frame, "jpeg", quality=92)  # JPEG: several times faster than PNG for photos
        options = ", ".join(f"{k}={v}" for k, v in self.heatmap.options.items())
        logit = f" · logit {self.capture.logit:.2f}" if self.capture.logit is not None else ""
        sinks = int(self.heatmap.sinks.sum())
        sink_note = f" · {sinks} sink patch(es){' excluded' if self.heatmap.exclude_sinks else ''}" if sinks else ""
        self._caption.value = (f'<span style="font-family: sans-serif; font-size: 12px">'
                               f"{html.escape(state.method)}({html.escape(options)}){logit}{sink_note}</span>")
        self._tokens.value = self.heatmap.tokens_html()

    def _draw_grid(self):
        from ..plotting.heatmaps import plot_layer_head_grid

        grids = layer_head_grids(self.capture)
        self._grid_figure.set_size_inches(0.9 * grids.shape[1] + 0.6, 0.9 * grids.shape[0] + 0.4)
        plot_layer_head_grid(grids, fig=self._grid_figure)
        self._grid_view.value = image_bytes(self._grid_figure)


def _check_opacity(value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise InvalidArgument("opacity", f"{value!r}: pass a number from 0 (photo only) to 1 (map only)")

