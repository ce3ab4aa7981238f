"""HeadsApp: which attention heads make an image match a prompt, and what does each one do?

For the chosen image and prompt, a layer × head grid of direct logit attributions (each head's
share of the image–text logit, :func:`clipviz.inside.attribution.logit_attribution`): red buttons
push the match up, blue ones down. Clicking a head shows its TextSpan description (the texts that
explain its output over a set of images, Gandelsman et al., ICLR 2024) and its per-patch
contribution over the image; the "ablate" toggle mean-ablates that head and shows the zero-shot
result with and without it.

The model runs once per (image, prompt) pair and once for the TextSpan descriptions; clicking a
head only redraws.
"""

from __future__ import annotations

import html
import io

import ipywidgets as widgets
import numpy as np
import traitlets
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..images import load_image
from ..inside.attribution import logit_attribution
from ..inside.decomposition import decompose
from ..inside.patching import ablated
from ..inside.textspan import default_pool, describe_heads
from ..plotting.inside import plot_head_patches

_SPAN_IMAGES = 48  # shapes scenes for the TextSpan descriptions when the app has few images


class HeadsState(traitlets.HasTraits):
    """What the app shows; knows nothing about widgets."""

    image_index = traitlets.Int(0)
    prompt = traitlets.Unicode("")
    layer = traitlets.Int(-1)  # -1: no head chosen yet
    head = traitlets.Int(-1)
    ablate = traitlets.Bool(False)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def _colour(value: float, limit: float) -> str:
    """Red for positive, blue for negative, white for zero (like the ``RdBu_r`` table)."""
    t = max(-1.0, min(1.0, value / limit)) if limit else 0.0
    if t >= 0:
        r, g, b = 255, int(255 * (1 - t * 0.8)), int(255 * (1 - t * 0.8))
    else:
        r, g, b = int(255 * (1 + t * 0.8)), int(255 * (1 + t * 0.8)), 255
    return f"#{r:02x}{g:02x}{b:02x}"


class HeadsApp(widgets.VBox):
    """Layer × head direct logit attribution for an image and a prompt; click a head for more.

    ``model``: a :class:`clipviz.HookedCLIP`; ``images``: one or more images (paths, PIL, arrays);
    ``prompt``: the text to match. ``labels``: zero-shot labels for the ablation result (default:
    the 30 shapes-world classes for the shapes models, else the prompt and ``labels`` you pass).
    ``texts``: the TextSpan pool (default: the shapes-world vocabulary for the shapes models);
    ``span_images``: the images the TextSpan descriptions and the mean-ablation average over
    (default: the app's images, or shapes scenes when there are fewer than 8).
    """

    def __init__(self, model, images, prompt: str = "a red circle", *, labels=None, texts=None, span_images=None,
                 names=None):
        super().__init__()
        self.model = model
        self.images = [load_image(image) for image in (images if isinstance(images, (list, tuple)) else [images])]
        if not self.images:
            raise ValueError("HeadsApp needs at least one image")
        self.names = list(names) if names is not None else [f"image {i}" for i in range(len(self.images))]
        self.pool = list(texts) if texts is not None else default_pool(model)
        self.labels = list(labels) if labels is not None else _default_labels(model, prompt)
        if span_images is None:
            span_images = self.images if len(self.images) >= 8 else _shapes_images(model) or self.images
        self.span_images = list(span_images)
        self.state = HeadsState(prompt=prompt)
        self.last_error: str | None = None
        self._attributions: dict = {}
        self._descriptions = None
        self._n_layers, self._n_heads = model.n_layers("vision"), model.n_heads("vision")

        self._image_picker = widgets.Dropdown(options=list(zip(self.names, range(len(self.images)))), value=0,
                                              description="image")
        self._prompt = widgets.Text(value=prompt, description="prompt", continuous_update=False)
        self._summary = widgets.HTML()
        self._buttons = [[widgets.Button(description="", layout=widgets.Layout(width="64px", height="28px", padding="0"))
                          for _ in range(self._n_heads)] for _ in range(self._n_layers)]
        for layer, row in enumerate(self._buttons):
            for head, button in enumerate(row):
                button.add_class(f"clipviz-head-L{layer}H{head}")
                button.on_click(lambda _, l=layer, h=head: self.select_head(l, h))
        header = [widgets.HTML("<b>L \\ H</b>")] + [widgets.HTML(f"<b>{h}</b>") for h in range(self._n_heads)]
        cells = list(header)
        for layer, row in enumerate(self._buttons):
            cells += [widgets.HTML(f"<b>{layer}</b>")] + row
        self._grid = widgets.GridBox(cells, layout=widgets.Layout(
            grid_template_columns=f"50px repeat({self._n_heads}, 66px)", grid_gap="2px"))
        self._grid.add_class("clipviz-heads-grid")
        self._detail = widgets.HTML("<i>click a head</i>")
        self._detail.add_class("clipviz-head-detail")
        self._picture = widgets.Image(format="png", layout=widgets.Layout(width="260px"))
        self._ablate = widgets.ToggleButton(value=False, description="ablate this head", disabled=True)
        self._ablate.add_class("clipviz-head-ablate")
        self._zeroshot = widgets.HTML()
        self._errors = widgets.Output()
        side = widgets.VBox([self._detail, self._ablate, self._zeroshot])
        self.children = [
            widgets.HBox([self._image_picker, self._prompt]),
            self._summary,
            widgets.HBox([self._grid, self._picture, side]),
            self._errors,
        ]
        self.add_class("clipviz-heads")

        self._image_picker.observe(lambda c: self._guarded(setattr, self.state, "image_index", c["new"]), names="value")
        self._prompt.observe(lambda c: self._guarded(setattr, self.state, "prompt", c["new"]), names="value")
        self._ablate.observe(lambda c: self._guarded(setattr, self.state, "ablate", c["new"]), names="value")
        self.state.observe(lambda c: self._guarded(self._refresh), names=["image_index", "prompt"])
        self.state.observe(lambda c: self._guarded(self._show_head), names=["layer", "head", "ablate"])
        self._guarded(self._refresh)

    # ------------------------------------------------------------------ public actions
    def select_head(self, layer: int, head: int) -> None:
        """Show head ``head`` of ``layer`` (negative layers count from the end), as a click would."""
        if not -self._n_layers <= layer < self._n_layers or not 0 <= head < self._n_heads:
            raise IndexError(f"no head L{layer}H{head}: layers 0…{self._n_layers - 1}, heads 0…{self._n_heads - 1}")
        with self.state.hold_trait_notifications():
            self.state.ablate = False
            self.state.layer, self.state.head = layer % self._n_layers, head
        self._ablate.value = False

    @property
    def attribution(self):
        """The :class:`~clipviz.inside.attribution.LogitAttribution` shown now."""
        key = (self.state.image_index, self.state.prompt)
        if key not in self._attributions:
            self._attributions[key] = logit_attribution(
                self.model, self.images[self.state.image_index], self.state.prompt,
                positions=range(self._n_layers),
            )
        return self._attributions[key]

    def descriptions(self):
        """TextSpan descriptions of every vision head over ``span_images`` (computed once)."""
        if self._descriptions is None:
            if not self.pool:
                self._descriptions = {}
            else:
                decomposition = decompose(self.model, images=self.span_images)
                self._descriptions = describe_heads(self.model, self.span_images, self.pool, n=4,
                                                    decomposition=decomposition)
        return self._descriptions

    # ------------------------------------------------------------------ drawing
    def _refresh(self) -> None:
        self._prompt.value = self.state.prompt  # the state may be set from outside (the Dashboard)
        self._image_picker.value = self.state.image_index
        attribution = self.attribution
        limit = float(np.abs(attribution.heads).max()) or 1.0
        for layer, row in enumerate(self._buttons):
            for head, button in enumerate(row):
                value = float(attribution.heads[layer, head])
                button.description = f"{value:+.2f}" if abs(value) < 10 else f"{value:+.1f}"
                button.style.font_weight = ""
                button.style.button_color = _colour(value, limit)
                button.tooltip = f"layer {layer}, head {head}: {value:+.3f} to the logit"
        mlps = ", ".join(f"L{l} {v:+.2f}" for l, v in enumerate(attribution.mlps))
        self._summary.value = (
            f"logit of <b>{html.escape(self.state.prompt)}</b>: {attribution.logit:.2f} = heads "
            f"{attribution.heads.sum():+.2f} + MLPs {attribution.mlps.sum():+.2f} ({mlps}) + embedding "
            f"{attribution.embed:+.2f} + biases {attribution.remainder:+.2f}"
        )
        self._show_head()

    def _show_head(self) -> None:
        layer, head = self.state.layer, self.state.head
        if layer < 0:
            return
        attribution = self.attribution
        for l, row in enumerate(self._buttons):
            for h, button in enumerate(row):
                button.button_style = ""
                if (l, h) == (layer, head):
                    button.add_class("clipviz-selected")
                else:
                    button.remove_class("clipviz-selected")
        chosen = self._buttons[layer][head]
        chosen.description = f"[{attribution.heads[layer, head]:+.1f}]"
        chosen.style.font_weight = "bold"
        description = self.descriptions().get((layer, head))
        rows = "".join(
            f"<tr><td>{share:.0%}</td><td>{html.escape(text)}</td></tr>"
            for text, share in zip(description.texts, description.variance_share)
        ) if description is not None else "<tr><td colspan=2><i>no text pool (pass texts=)</i></td></tr>"
        self._detail.value = (
            f"<b>L{layer}H{head}</b>: {attribution.heads[layer, head]:+.3f} to the logit<br>"
            f"TextSpan (share of the head's variance):<table>{rows}</table>"
        )
        figure = Figure(figsize=(3, 3), dpi=80)
        plot_head_patches(attribution, layer, head, image=self.images[self.state.image_index], ax=figure.subplots())
        self._picture.value = _png(figure)
        self._ablate.disabled = False
        self._zeroshot.value = self._zero_shot_table(layer, head) if self.state.ablate else ""

    def _zero_shot_table(self, layer: int, head: int) -> str:
        image = [self.images[self.state.image_index]]
        texts = self.model.text_embeds(self.labels)
        before = (self.model.logit_scale * self.model.image_embeds(image) @ texts.t()).softmax(-1)[0]
        with ablated(self.model, [(layer, head)], reference=self.span_images):
            after = (self.model.logit_scale * self.model.image_embeds(image) @ texts.t()).softmax(-1)[0]
        order = before.argsort(descending=True)[:5].tolist()
        top_after = self.labels[int(after.argmax())]
        rows = "".join(
            f"<tr><td>{html.escape(self.labels[i])}</td><td>{before[i]:.0%}</td><td>{after[i]:.0%}</td></tr>" for i in order
        )
        return (f"<b>zero-shot, L{layer}H{head} mean-ablated</b> — top label now: {html.escape(top_after)}"
                f"<table><tr><th>label</th><th>before</th><th>ablated</th></tr>{rows}</table>")

    def _guarded(self, function, *args) -> None:
        """A callback's failure becomes a message in the app, never a lost traceback."""
        try:
            function(*args)
            self.last_error = None
        except Exception as error:  # noqa: BLE001 - shown to the user
            self.last_error = f"{type(error).__name__}: {error}"
            with self._errors:
                print(self.last_error)


def _default_labels(model, prompt: str) -> list[str]:
    if default_pool(model) is not None:
        from ..data import shapes

        return shapes.class_labels("en")
    return [prompt]


def _shapes_images(model):
    if default_pool(model) is None:
        return None
    from ..data import shapes

    return [scene.image for scene in shapes.sample(_SPAN_IMAGES, seed=11)]
