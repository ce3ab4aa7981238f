"""Patch heatmaps: which image regions (and which words) drive an image–text match.

``heatmap(model, image, text=None, method=...)`` returns a :class:`Heatmap` over the vision
tower's patch grid, mapped back onto the *original* image (the processor's resize and centre
crop undone through :class:`clipviz.images.CropGeometry`).

Methods (``method=``), each with its own options:

``"attention"`` — raw attention of the CLS token to every patch in one layer.
    Options: ``layer=-1`` (negative counts from the end), ``head="mean"`` (or a head index).
    Ignores ``text`` (with a warning).
``"rollout"`` — attention rollout, Abnar & Zuidema 2020 ("Quantifying attention flow in
    transformers"). Per layer the heads are fused (``head_fusion="mean"|"max"|"min"``),
    Â = 0.5·A + 0.5·I with rows renormalised to sum 1, and the Â are multiplied from
    ``start_layer=0`` up to the last layer (R = Â_L ··· Â_start); the map is R's CLS row over the
    patches. Ignores ``text`` (with a warning).
``"relevance"`` — Chefer, Gur & Wolf 2021 ("Generic attention-model explainability for bi-modal
    and encoder-decoder transformers", ICCV). With s the image–text logit
    (``logit_scale · cos(image, text)``), R = I and for each layer from ``start_layer=0``:
    R ← R + mean_heads((∂s/∂A ⊙ A)⁺) · R; the map is R's CLS row over the patches. Needs ``text``.
    The same rule on the text tower (all layers, row of the pooled token: EOS for CLIP, [CLS]
    otherwise) gives ``Heatmap.token_scores``, one relevance per word piece.
``"grad_eclip"`` — Grad-ECLIP, Zhao, Wang, Zeng, Zhao & Chan 2024 ("Gradient-based visual
    explanation for transformer-based CLIP", ICML). In the last layer's attention (``layer=-1``)
    with o the CLS row of the attention output before the output projection, v_i the values and
    λ_i the min–max normalised cosine similarity of the CLS query to key i ("loosened" attention):
    H_i = ReLU(Σ_c ∂s/∂o_c · v_i,c · λ_i). Needs ``text``. (The authors' reference code measures
    λ after passing q and k through the output projection; clipviz follows the paper's definition,
    on the layer's own query and key projections.)

Normalisation: ``Heatmap.grid`` is min–max scaled over the patches to [0, 1] (a constant map
becomes all zeros); ``Heatmap.raw`` keeps the method's unscaled values. ``token_scores`` are
divided by their maximum, so the most relevant word piece scores 1.

Sink tokens: ViTs trained at scale repurpose a few low-information patches as high-norm
"registers" that soak up attention (Darcet, Oquab, Mairal & Bojanowski 2024, "Vision transformers
need registers", ICLR). clipviz flags a patch as a sink when its residual-stream norm after the
last block exceeds ``sink_ratio`` (default 2.5) times the median patch norm
(``Heatmap.sinks``, a boolean grid, always reported). ``exclude_sinks=True`` sets the sink patches
to the smallest value among the other patches *before* normalisation, so they neither stretch the
colour scale nor win the pointing game. The small bundled models have no sinks; large Hub models
(e.g. ViT-L/14) do.

``HEATMAP_METHODS`` holds one :class:`HeatmapMethod` record per method (label, needs text,
options with defaults, layers to capture, compute); everything that offers a choice of method
reads it. Drawing (``blend``, ``colour_table``) lives in :mod:`clipviz.plotting.heatmaps`.

Everything here runs the model once per ``heatmap`` call. :func:`capture_attention` does that
one run and keeps what every method needs; :func:`heatmap_from_capture` then recomputes any
method / layer / head from it without touching the model (the AttentionApp's sliders use this).
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import torch
from PIL import Image

from . import images as _images
from . import towers as _towers
from .errors import InvalidArgument, WrongType

HEAD_FUSIONS = ("mean", "max", "min")
DEFAULT_SINK_RATIO = 2.5


# ------------------------------------------------------------------------------ validation
def resolve_layer(layer, n_layers: int, option: str = "layer") -> int:
    """``layer`` as an index in ``0..n_layers-1`` (negative counts from the end), or a clear error."""
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
        raise WrongType(f"{option} must be an int, got {type(layer).__name__} {layer!r}")
    if not -n_layers <= layer < n_layers:
        raise InvalidArgument(
            f"{option}={layer} is out of range: the vision tower has {n_layers} layers, so valid values "
            f"are 0..{n_layers - 1} (or -{n_layers}..-1 counting from the end)"
        )
    return int(layer) % n_layers


def resolve_head(head, n_heads: int):
    """``"mean"`` or a head index in ``0..n_heads-1`` (negative counts from the end)."""
    if head == "mean":
        return "mean"
    if isinstance(head, bool) or not isinstance(head, (int, np.integer)):
        raise WrongType(f"head must be 'mean' or an int, got {type(head).__name__} {head!r}")
    if not -n_heads <= head < n_heads:
        raise InvalidArgument(
            f"head={head} is out of range: each vision layer has {n_heads} heads, so valid values are "
            f"0..{n_heads - 1} (or -{n_heads}..-1), or 'mean'"
        )
    return int(head) % n_heads


# ------------------------------------------------------------------------------ capture
@dataclass(eq=False)
class AttentionCapture:
    """One run of the model on one image (and optionally one text): everything the methods need.

    ``patterns[layer]``: vision attention ``[head, query, key]`` (float32 numpy), for the captured
    layers; ``pattern_grads[layer]``: ∂s/∂A for the same layers when a text was given, with
    s = ``logit``. Token 0 is CLS, then the patches row-major over ``grid_size``.
    """

    image: Image.Image
    geometry: _images.CropGeometry
    grid_size: tuple[int, int]
    n_layers: int
    n_heads: int
    patterns: dict[int, np.ndarray]
    patch_norms: np.ndarray  # [n_patches] residual-stream norm after the last block
    text: str | None = None
    logit: float | None = None
    pattern_grads: dict[int, np.ndarray] = field(default_factory=dict)
    tokens: list[str] | None = None  # display text of each content word piece
    token_relevance: np.ndarray | None = None  # Chefer relevance of each content token (raw)
    grad_eclip: dict[int, np.ndarray] = field(default_factory=dict)  # layer -> [n_patches] raw map
    readout: str = "cls"  # the tokens the model pools: "cls", or "patch_mean" (CLIPForImageClassification)
    _derived: dict = field(default_factory=dict, repr=False)

    def derived(self, key, compute):
        """A per-layer product computed once per capture (so the app's slider moves stay cheap)."""
        if key not in self._derived:
            self._derived[key] = compute()
        return self._derived[key]

    def readout_row(self):
        """Row 0 (CLS), or the mean of the patch rows for a model whose head reads the mean patch state."""
        if self.readout == "cls":
            return 0
        n_tokens = self.grid_size[0] * self.grid_size[1] + 1
        weights = np.full(n_tokens, 1.0 / (n_tokens - 1))
        weights[0] = 0.0
        return weights

    def sinks(self, ratio: float = DEFAULT_SINK_RATIO) -> np.ndarray:
        """Boolean ``[grid_h, grid_w]``: patches whose residual norm exceeds ``ratio`` × the median."""
        return (self.patch_norms > ratio * np.median(self.patch_norms)).reshape(self.grid_size)


def _load(model, image, resolution=None):
    """The upright RGB image and the processor's pixel values, with clear errors for bad input."""
    picture = _images.load_image(image)  # ImageLoadError (a ValueError) on anything unreadable
    if resolution is not None:
        _images.whole_image_size(picture.size, resolution, model.patch_size)  # TypeError/ValueError first
    try:
        pixels = model.pixel_values([picture], resolution=resolution)
    except Exception as error:  # the processor's own errors name internals; say what failed
        raise _images.ImageLoadError(
            f"the {model.family} image processor could not read this {picture.size[0]}x{picture.size[1]} "
            f"image: {type(error).__name__}: {error}"
        ) from error
    return picture, pixels


def _token_pieces(tokenizer, ids: list[int]) -> list[str]:
    """The text each token adds, decoded incrementally so multi-byte characters come out whole."""
    pieces, previous = [], ""
    for end in range(1, len(ids) + 1):
        current = tokenizer.decode(ids[:end], skip_special_tokens=True, clean_up_tokenization_spaces=False)
        common = 0
        while common < min(len(previous), len(current)) and previous[common] == current[common]:
            common += 1
        pieces.append(current[common:])  # a completed multi-byte character replaces its '�' prefix
        previous = current
    return pieces


def _relevance_cam(pattern: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """One layer's Chefer et al. 2021 update: mean over heads of (∂s/∂A ⊙ A)⁺, ``[query, key]``."""
    return np.clip(grad.astype(np.float64) * pattern, 0.0, None).mean(axis=0)


def relevance_row(cams: dict[int, np.ndarray], layers, row: int = 0) -> np.ndarray:
    """Row ``row`` of R after R = I; R ← R + cam_l · R for l in ``layers`` (in order).

    R = (I + cam_last) ··· (I + cam_first), so one row of it is a row vector multiplied from the
    left, v ← v + v · cam_l from the last layer down: O(tokens²) per layer instead of O(tokens³).
    (numpy, not torch: small multi-threaded torch ops stall for milliseconds on a busy CPU.)
    """
    vector = _start_vector(cams[layers[0]].shape[-1], row)
    for layer in reversed(list(layers)):
        vector = vector + vector @ cams[layer]
    return vector


def _start_vector(size: int, row) -> np.ndarray:
    """One-hot at ``row`` (an int), or ``row`` itself (a weight per token, e.g. a mean readout)."""
    if np.ndim(row) == 0:
        vector = np.zeros(size, dtype=np.float64)
        vector[row] = 1.0
        return vector
    return np.asarray(row, dtype=np.float64)


_NO_TARGET = object()


def capture_attention(model, image, text: str | None = None, *, layers=None, grad_eclip_layers=(),
                      target=_NO_TARGET, resolution=None) -> AttentionCapture:
    """Run ``model`` once on ``image`` (and ``text``) and keep the vision attention of ``layers``.

    With ``text``, the run also back-propagates the image–text logit s to every kept attention
    pattern (∂s/∂A, for relevance), to the text tower's patterns (token relevance) and, for
    ``grad_eclip_layers``, to those layers' attention outputs (Grad-ECLIP). ``layers=None``: all.

    An image classifier (``CLIPForImageClassification``) has no text: ``target=`` (a label of
    ``model.labels``, a class index, or ``None`` for the predicted class) makes s that class's logit.
    ``resolution=`` (the short side in pixels, or ``(width, height)``) runs the vision tower on the
    whole image, uncropped, at that size, with interpolated position embeddings; the patch grid is
    then ``resolution / patch_size`` on the short side and follows the image's aspect on the long one.
    """
    from .families import text_pooling_positions, tower_modules

    classifier = getattr(model, "is_classifier", False)
    if target is not _NO_TARGET and not classifier:
        raise ValueError(
            f"target= names a class of an image classifier; this model ({type(model.model).__name__}) explains "
            "an image–text match: pass text= instead"
        )
    if classifier and text is not None:
        raise ValueError(
            f"this model is an image classifier with classes, not a text tower: pass target= (one of "
            f"{model.labels[:5]}{'...' if len(model.labels) > 5 else ''} or a class index) instead of text={text!r}"
        )
    if text is not None:
        model.require("text", "a text-conditioned map (relevance, grad_eclip)")
    picture, pixels = _load(model, image, resolution)
    n_layers, n_heads = model.n_layers("vision"), model.n_heads("vision")
    layers = list(range(n_layers)) if layers is None else sorted({resolve_layer(l, n_layers) for l in layers})
    grad_eclip_layers = sorted({resolve_layer(l, n_layers) for l in grad_eclip_layers})
    if resolution is None:
        geometry = _images.CropGeometry.from_processor(model.processor, picture.size)
    else:
        geometry = _images.CropGeometry.whole_image(picture.size, tuple(pixels.shape[-1:-3:-1]))
    grid_size = model.grid_of(pixels)
    last = n_layers - 1
    kept: dict[str, torch.Tensor] = {}

    def keep(tensor, *, hook):
        kept[hook.name] = tensor

    names = [f"vision.blocks.{l}.attn.hook_pattern" for l in layers] + [f"vision.blocks.{last}.hook_resid_post"]
    names += [f"vision.blocks.{l}.hook_resid_pre" for l in grad_eclip_layers]
    names += [f"vision.blocks.{l}.attn.hook_out" for l in grad_eclip_layers]
    capture = AttentionCapture(picture, geometry, grid_size, n_layers, n_heads, {}, np.zeros(0), text=text)
    if classifier:
        capture.readout = "patch_mean"  # its head reads the mean of the last layer's patch states

    if classifier and target is not _NO_TARGET:
        pixels = pixels.detach().clone().requires_grad_(True)  # the graph must exist even with frozen weights
        with torch.enable_grad(), model.hooks([(n, keep) for n in names]):
            class_logits = model.class_logits(pixels)[0]
            index = int(class_logits.argmax()) if target is None else _towers.resolve_target(model.labels, target)
            logit = class_logits[index]
            wanted = [f"vision.blocks.{l}.attn.hook_pattern" for l in layers]
            wanted += [f"vision.blocks.{l}.attn.hook_out" for l in grad_eclip_layers]
            grads = dict(zip(wanted, torch.autograd.grad(logit, [kept[n] for n in wanted], allow_unused=True)))
        capture.logit, capture.text = float(logit.detach()), model.labels[index]
        capture.pattern_grads = {
            l: _as_numpy(grads[f"vision.blocks.{l}.attn.hook_pattern"], kept[f"vision.blocks.{l}.attn.hook_pattern"])[0]
            for l in layers
        }
        rows = list(range(1, grid_size[0] * grid_size[1] + 1))
        for l in grad_eclip_layers:
            capture.grad_eclip[l] = _grad_eclip_map(
                model, tower_modules(model.layout.parts, model.family, "vision").blocks[l],
                kept[f"vision.blocks.{l}.hook_resid_pre"], grads[f"vision.blocks.{l}.attn.hook_out"], rows=rows,
            )
    elif text is None:
        with torch.no_grad(), model.hooks([(n, keep) for n in names]):
            model.image_features(pixels)
    else:
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        tokens = model.tokenize([text])
        n_text = model.n_layers("text")
        text_names = [f"text.blocks.{l}.attn.hook_pattern" for l in range(n_text)]

        def needs_grad(tensor, *, hook):
            # The graph must reach the text tower even if the user froze the parameters.
            return tensor if tensor.requires_grad else tensor.detach().requires_grad_(True)

        pixels = pixels.detach().clone().requires_grad_(True)  # likewise for the vision tower
        hooks = [("text.hook_embed", needs_grad)] + [(n, keep) for n in names + text_names]
        with torch.enable_grad(), model.hooks(hooks):
            image_embed = model.image_features(pixels)
            text_embed = model.text_features(tokens)
            logit = model.logit_scale * (image_embed * text_embed).sum()
            wanted = [f"vision.blocks.{l}.attn.hook_pattern" for l in layers] + text_names
            wanted += [f"vision.blocks.{l}.attn.hook_out" for l in grad_eclip_layers]
            # autograd.grad rather than backward(): same ∂s/∂A, and no .grad left on the parameters.
            grads = dict(zip(wanted, torch.autograd.grad(logit, [kept[n] for n in wanted], allow_unused=True)))
        capture.logit = float(logit.detach())
        capture.pattern_grads = {
            l: _as_numpy(grads[f"vision.blocks.{l}.attn.hook_pattern"], kept[f"vision.blocks.{l}.attn.hook_pattern"])[0]
            for l in layers
        }
        # token relevance: the same rule on the text tower, the pooled token's row over content tokens
        ids = tokens["input_ids"][0]
        eos = getattr(model.tower_config("text"), "eos_token_id", None)
        pooled = int(text_pooling_positions(model.family, tokens["input_ids"], eos)[0])
        text_patterns = {l: _as_numpy(kept[n])[0] for l, n in enumerate(text_names)}
        text_grads = {l: _as_numpy(grads[n], kept[n])[0] for l, n in enumerate(text_names)}
        text_cams = {l: _relevance_cam(text_patterns[l], text_grads[l]) for l in range(n_text)}
        text_relevance = relevance_row(text_cams, list(range(n_text)), row=pooled)
        special = set(model.processor.tokenizer.all_special_ids)
        mask = tokens.get("attention_mask", torch.ones_like(ids[None]))[0]
        content = [i for i in range(len(ids)) if mask[i] and int(ids[i]) not in special]
        capture.tokens = _token_pieces(model.processor.tokenizer, [int(ids[i]) for i in content])
        capture.token_relevance = text_relevance[content]
        for l in grad_eclip_layers:
            capture.grad_eclip[l] = _grad_eclip_map(
                model, tower_modules(model.layout.parts, model.family, "vision").blocks[l],
                kept[f"vision.blocks.{l}.hook_resid_pre"], grads[f"vision.blocks.{l}.attn.hook_out"],
            )

    capture.patterns = {l: _as_numpy(kept[f"vision.blocks.{l}.attn.hook_pattern"])[0] for l in layers}
    resid = kept[f"vision.blocks.{last}.hook_resid_post"].detach()[0, 1:].double()
    capture.patch_norms = resid.norm(dim=-1).cpu().numpy()
    return capture


def _as_numpy(tensor, like=None) -> np.ndarray:
    """float32 on the CPU: patterns and gradients of a ViT-L/14@336 take 0.5 GB each even so;
    the methods cast each layer to float64 as they use it."""
    if tensor is None:  # no path from s to this tensor: its gradient is zero
        return np.zeros(tuple(like.shape), dtype=np.float32)
    return tensor.detach().to("cpu", torch.float32).numpy()


def _grad_eclip_map(model, block, resid_pre, grad_attn_out, rows=(0,)) -> np.ndarray:
    """Grad-ECLIP (Zhao et al. 2024) for one CLIP-style vision block: H_i = ReLU(Σ_c w_c v_ic λ_i).

    ``rows``: the query tokens the model pools (CLS for CLIP's embedding). A head that reads the
    mean of the patch states (CLIPForImageClassification) pools every patch: then
    H_i = ReLU(Σ_q Σ_c w_qc v_ic λ_qi), which is the paper's formula when ``rows`` is CLS alone.
    """
    rows = list(rows)
    with torch.no_grad():
        hidden = block.attn_norm(resid_pre.detach())[0]  # [pos, d_model]
        query, key, value = block.q(hidden), block.k(hidden), block.v(hidden)
        # ∂s/∂o before the output projection: o ↦ o Wᵀ + b, so ∂s/∂o = ∂s/∂y · W
        weight = block.o.weight
        channel_weights = grad_attn_out.detach()[0, rows].to(weight.dtype) @ weight  # [n_rows, d_model]
        q = torch.nn.functional.normalize(query[rows].double(), dim=-1)
        k = torch.nn.functional.normalize(key[1:].double(), dim=-1)
        cosine = q @ k.t()  # [n_rows, n_patches]
        low, high = cosine.min(dim=-1, keepdim=True).values, cosine.max(dim=-1, keepdim=True).values
        span = high - low
        loosened = torch.where(span > 0, (cosine - low) / span.clamp_min(1e-300), torch.ones_like(cosine))
        emap = torch.relu(((channel_weights.double() @ value[1:].double().t()) * loosened).sum(0))
    return emap.cpu().numpy()


# ------------------------------------------------------------------------------ the methods
def attention_map(capture: AttentionCapture, layer: int = -1, head="mean") -> np.ndarray:
    """CLS-to-patch attention of one layer: ``[n_patches]``, one head or the mean of the heads."""
    layer = resolve_layer(layer, capture.n_layers)
    head = resolve_head(head, capture.n_heads)
    pattern = _captured(capture.patterns, layer, "attention patterns")
    readout = capture.readout_row()
    if np.ndim(readout) == 0:
        rows = pattern[:, readout, 1:].astype(np.float64)  # [head, n_patches]
    else:  # the pooled rows' mean attention
        rows = np.einsum("q,hqk->hk", readout, pattern.astype(np.float64))[:, 1:]
    return rows.mean(axis=0) if head == "mean" else rows[head]




def rollout_layer(pattern: np.ndarray, head_fusion: str = "mean") -> np.ndarray:
    """Â = rownorm(0.5·fuse_heads(A) + 0.5·I) for one layer's ``[head, query, key]`` pattern."""
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}, not {head_fusion!r}")
    pattern = np.asarray(pattern, dtype=np.float64)
    fused = {"mean": pattern.mean, "max": pattern.max, "min": pattern.min}[head_fusion](axis=0)
    augmented = 0.5 * fused + 0.5 * np.eye(fused.shape[-1])
    return augmented / augmented.sum(axis=-1, keepdims=True)


def rollout_row(augmented: dict[int, np.ndarray], layers, row: int = 0) -> np.ndarray:
    """Row ``row`` of Abnar & Zuidema 2020's R = Â_last ··· Â_first over ``layers`` (a row vector
    multiplied from the left, last layer first: O(tokens²) per layer)."""
    vector = _start_vector(augmented[layers[0]].shape[-1], row)
    for layer in reversed(list(layers)):
        vector = vector @ augmented[layer]
    return vector


def rollout_map(capture: AttentionCapture, start_layer: int = 0, head_fusion: str = "mean") -> np.ndarray:
    """Attention rollout's CLS row over the patches, from ``start_layer`` to the last layer."""
    start = resolve_layer(start_layer, capture.n_layers, "start_layer")
    layers = list(range(start, capture.n_layers))
    for layer in layers:
        _captured(capture.patterns, layer, "attention patterns")
    augmented = {
        layer: capture.derived(("rollout", head_fusion, layer),
                               lambda layer=layer: rollout_layer(capture.patterns[layer], head_fusion))
        for layer in layers
    }
    return rollout_row(augmented, layers, row=capture.readout_row())[1:]


def relevance_map(capture: AttentionCapture, start_layer: int = 0) -> np.ndarray:
    """Chefer et al. 2021 relevance's CLS row over the patches, from ``start_layer`` to the last layer."""
    start = resolve_layer(start_layer, capture.n_layers, "start_layer")
    layers = list(range(start, capture.n_layers))
    for layer in layers:
        _captured(capture.pattern_grads, layer, "attention gradients (capture with a text)")
    def cam(layer):
        return capture.derived(("relevance", layer),
                               lambda: _relevance_cam(capture.patterns[layer], capture.pattern_grads[layer]))

    cams = {layer: cam(layer) for layer in layers}
    return relevance_row(cams, layers, row=capture.readout_row())[1:]


def grad_eclip_map(capture: AttentionCapture, layer: int = -1) -> np.ndarray:
    """Grad-ECLIP's map (Zhao et al. 2024) of ``layer`` (the last by default)."""
    layer = resolve_layer(layer, capture.n_layers)
    return _captured(capture.grad_eclip, layer, "Grad-ECLIP inputs (capture with a text and grad_eclip_layers)")


def _captured(store: dict, layer: int, what: str):
    if layer not in store:
        raise ValueError(f"layer {layer} was not captured ({what}); captured layers: {sorted(store) or 'none'}")
    return store[layer]


# ------------------------------------------------------------------------------ the method table
@dataclass(frozen=True)
class HeatmapMethod:
    """Everything clipviz knows about one heatmap method, in one place.

    ``name``: the ``method=`` value; ``label``: how the apps name it; ``needs_text``: it explains an
    image–text match (a text is required, and kept on the result); ``options``: every option with
    its default (no others are accepted); ``capture``: ``(options, n_layers) -> (layers,
    grad_eclip_layers)``, what :func:`capture_attention` must keep for these options;
    ``compute``: ``(capture, **options) -> [n_patches]`` raw map; ``token_scores``: the result also
    scores the text's word pieces; ``slider``: the option AttentionApp's layer slider drives (None:
    the slider is off, as for Grad-ECLIP, whose app capture keeps the last layer only).

    :func:`heatmap`, :func:`heatmap_from_capture`, ``AttentionApp`` and
    :mod:`clipviz.heatmap_eval` read this table; a new method is one more record in ``HEATMAP_METHODS``.
    """

    name: str
    label: str
    needs_text: bool
    options: Mapping[str, object]
    capture: Callable[[dict, int], tuple[list[int], list[int]]]
    compute: Callable[..., np.ndarray]
    token_scores: bool = False
    slider: str | None = None

    def resolve_options(self, options: dict) -> dict:
        """The defaults updated with ``options``; an unknown option is a TypeError that lists the valid ones."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            valid = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
            raise TypeError(f"method {self.name!r} has no option {unknown[0]!r}; its options are: {valid}")
        return {**self.options, **options}


def _from_start_layer(options: dict, n_layers: int):
    return list(range(resolve_layer(options["start_layer"], n_layers, "start_layer"), n_layers)), []


HEATMAP_METHODS: Mapping[str, HeatmapMethod] = MappingProxyType({record.name: record for record in (
    HeatmapMethod(
        "attention", "attention", needs_text=False, options=MappingProxyType({"layer": -1, "head": "mean"}),
        capture=lambda options, n_layers: ([options["layer"]], []), compute=attention_map, slider="layer",
    ),
    HeatmapMethod(
        "rollout", "rollout", needs_text=False, options=MappingProxyType({"start_layer": 0, "head_fusion": "mean"}),
        capture=_from_start_layer, compute=rollout_map, slider="start_layer",
    ),
    HeatmapMethod(
        "relevance", "relevance (Chefer)", needs_text=True, options=MappingProxyType({"start_layer": 0}),
        capture=_from_start_layer, compute=relevance_map, token_scores=True, slider="start_layer",
    ),
    HeatmapMethod(
        "grad_eclip", "Grad-ECLIP", needs_text=True, options=MappingProxyType({"layer": -1}),
        capture=lambda options, n_layers: ([n_layers - 1], [options["layer"]]), compute=grad_eclip_map,
    ),
)})

#: the method names, and those that need a text (views of ``HEATMAP_METHODS``, kept for callers)
METHODS = tuple(HEATMAP_METHODS)
TEXT_METHODS = tuple(name for name, record in HEATMAP_METHODS.items() if record.needs_text)


def method_record(method: str) -> HeatmapMethod:
    """The :class:`HeatmapMethod` named ``method``, or a ValueError listing the methods."""
    if method not in HEATMAP_METHODS:
        raise ValueError(f"unknown heatmap method {method!r}; choose one of: {', '.join(HEATMAP_METHODS)}")
    return HEATMAP_METHODS[method]


def _check_option_values(options: dict, n_layers: int, n_heads: int) -> None:
    """Validate option values against the model before it runs, so a typo costs nothing."""
    if "layer" in options:
        resolve_layer(options["layer"], n_layers)
    if "head" in options:
        resolve_head(options["head"], n_heads)
    if "start_layer" in options:
        resolve_layer(options["start_layer"], n_layers, "start_layer")
    if options.get("head_fusion", "mean") not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}, not {options['head_fusion']!r}")


def normalise(values: np.ndarray) -> np.ndarray:
    """Min–max scale to [0, 1]; a constant input (or all NaN) becomes zeros."""
    values = np.asarray(values, dtype=np.float64)
    low, high = np.nanmin(values), np.nanmax(values)
    if not np.isfinite(high - low) or high - low <= 0:
        return np.zeros_like(values)
    return (values - low) / (high - low)


def check_sink_ratio(sink_ratio) -> float:
    """``sink_ratio`` must be a finite number above 1: at or below 1 half the patches or more would be "sinks"."""
    import numbers

    if isinstance(sink_ratio, bool) or not isinstance(sink_ratio, numbers.Real):
        raise WrongType("sink_ratio", f"got {type(sink_ratio).__name__} {sink_ratio!r}; pass a number above 1 "
                                      f"(default {DEFAULT_SINK_RATIO}: a patch whose norm exceeds that many medians)")
    if not (np.isfinite(sink_ratio) and sink_ratio > 1):
        raise InvalidArgument("sink_ratio", f"{sink_ratio!r} would flag at least half the patches as sinks (a sink's norm "
                                            f"is sink_ratio x the median patch norm): pass a number above 1, e.g. "
                                            f"{DEFAULT_SINK_RATIO}")
    return float(sink_ratio)


def heatmap_from_capture(
    capture: AttentionCapture, method: str = "relevance", *, exclude_sinks: bool = False,
    sink_ratio: float = DEFAULT_SINK_RATIO, **options,
) -> Heatmap:
    """A :class:`Heatmap` computed from an earlier :func:`capture_attention` (no model run)."""
    record = method_record(method)
    options = record.resolve_options(options)
    sinks = capture.sinks(check_sink_ratio(sink_ratio))
    raw = np.asarray(record.compute(capture, **options), dtype=np.float64).reshape(capture.grid_size)
    values = raw.copy()
    excluded = bool(exclude_sinks and sinks.any() and not sinks.all())  # report only an exclusion that happened
    if excluded:
        values[sinks] = values[~sinks].min()
    token_scores = None
    if record.token_scores and capture.token_relevance is not None:
        token_scores = normalise_tokens(capture.token_relevance)
    return Heatmap(
        grid=normalise(values), raw=raw, image=capture.image, geometry=capture.geometry, method=method,
        options=options, text=capture.text if record.needs_text else None, logit=capture.logit,
        tokens=capture.tokens if token_scores is not None else None, token_scores=token_scores,
        sinks=sinks, exclude_sinks=excluded,
    )


def normalise_tokens(scores: np.ndarray) -> np.ndarray:
    """Token relevances divided by their maximum (clipped at 0), so the top word piece scores 1."""
    scores = np.clip(np.asarray(scores, dtype=np.float64), 0, None)
    top = scores.max() if scores.size else 0.0
    return scores / top if top > 0 else np.zeros_like(scores)


def heatmap(model, image, text: str | None = None, method: str = "relevance", *, exclude_sinks: bool = False,
            sink_ratio: float = DEFAULT_SINK_RATIO, target=None, resolution=None, **options) -> Heatmap:
    """Which patches of ``image`` (and which words of ``text``) drive the model's match.

    ``method``: ``"attention"`` (options ``layer=-1``, ``head="mean"``), ``"rollout"``
    (``start_layer=0``, ``head_fusion="mean"``), ``"relevance"`` (``start_layer=0``; needs text;
    also scores the text's tokens) or ``"grad_eclip"`` (``layer=-1``; needs text); see the module
    docstring for the papers and formulas. ``exclude_sinks=True`` leaves high-norm sink patches
    (Darcet et al. 2024) out of the map. Returns a :class:`Heatmap` whose ``grid`` is scaled to [0, 1].

    ``target``: for an image classifier (``CLIPForImageClassification``) the methods that need a text
    explain a class logit instead: a label of ``model.labels`` or a class index (default: the
    predicted class). ``resolution``: the whole image, uncropped, at this short side in pixels (or
    ``(width, height)``), with interpolated position embeddings — a map over all of a non-square
    photo and a finer grid; ``None`` (default) explains the processor's centre crop, the model's
    training view. The model saw one resolution in training, so far from it maps get noisier
    (BENCHMARKS.md, "Any resolution", gives the pointing game at 1× and 2×).

        >>> hm = clipviz.heatmap(model, "cat.jpg", "a photo of a cat")
        >>> hm.plot(); hm.overlay().save("cat_relevance.png")
    """
    record = method_record(method)
    options = record.resolve_options(options)
    check_sink_ratio(sink_ratio)
    classifier = getattr(model, "is_classifier", False)
    if target is not None and not classifier:
        raise ValueError(
            f"target= names a class of an image classifier; this model ({type(model.model).__name__}) explains "
            "an image–text match: pass text= instead"
        )
    if classifier:
        if text is not None:
            raise ValueError(
                f"this model is an image classifier: it explains one of its classes, not a text — pass "
                f"target= (a label such as {model.labels[0]!r}, or a class index) instead of text={text!r}"
            )
        if target is not None:
            _towers.resolve_target(model.labels, target)  # a typo costs nothing
    elif record.needs_text:
        model.require("text", f"method {method!r}, which explains an image–text match "
                              "(a vision tower alone supports method='attention' or 'rollout')")
    if record.needs_text and text is None and not classifier:
        raise ValueError(f"method {method!r} explains an image–text match: pass text=")
    if not record.needs_text and text is not None:
        warnings.warn(
            f"method {method!r} does not depend on the text, which is ignored; use one of "
            f"{', '.join(repr(m) for m in TEXT_METHODS)} for a text-conditioned map", UserWarning, stacklevel=2,
        )
        text = None
    n_layers = model.n_layers("vision")
    _check_option_values(options, n_layers, model.n_heads("vision"))
    layers, eclip = record.capture(options, n_layers)
    extra = {"target": target} if classifier and record.needs_text else {}
    capture = capture_attention(model, image, text, layers=layers, grad_eclip_layers=eclip, resolution=resolution, **extra)
    return heatmap_from_capture(capture, method, exclude_sinks=exclude_sinks, sink_ratio=sink_ratio, **options)


def layer_head_grids(capture: AttentionCapture) -> np.ndarray:
    """CLS-to-patch attention of every captured layer and head, plus the head mean as a last column.

    ``[n_layers, n_heads + 1, grid_h, grid_w]`` (NaN rows for layers not captured), each map scaled
    to [0, 1] on its own.
    """
    gh, gw = capture.grid_size
    out = np.full((capture.n_layers, capture.n_heads + 1, gh, gw), np.nan)
    for layer, pattern in capture.patterns.items():
        rows = pattern[:, 0, 1:].astype(np.float64)
        for head in range(capture.n_heads):
            out[layer, head] = normalise(rows[head]).reshape(gh, gw)
        out[layer, -1] = normalise(rows.mean(axis=0)).reshape(gh, gw)
    return out


# ------------------------------------------------------------------------------ the result
@dataclass(eq=False)
class Heatmap:
    """A patch heatmap and how to show it on the original image.

    ``grid``: ``[grid_h, grid_w]`` in [0, 1] (min–max scaled, see the module docstring);
    ``raw``: the method's unscaled values; ``image_map``: ``[H, W]`` over the original upright
    image (bilinear between patch centres, NaN outside the processor's centre crop);
    ``sinks``: boolean grid of detected high-norm patches; ``tokens`` / ``token_scores``: the
    text's word pieces and their relevance in [0, 1] (``method="relevance"`` only).
    """

    grid: np.ndarray
    raw: np.ndarray
    image: Image.Image
    geometry: _images.CropGeometry
    method: str
    options: dict
    text: str | None = None
    logit: float | None = None
    tokens: list[str] | None = None
    token_scores: np.ndarray | None = None
    sinks: np.ndarray | None = None
    exclude_sinks: bool = False  # True only when sink patches were actually excluded from the map
    # (grid, image map) of the last grid mapped: a new ``grid`` (assigned or via ``replace``) maps anew
    _mapped: tuple | None = field(default=None, init=False, repr=False)

    @classmethod
    def from_grid(cls, grid, image: Image.Image, geometry: _images.CropGeometry, method: str = "custom",
                  **fields) -> Heatmap:
        """A heatmap from any ``[grid_h, grid_w]`` map in [0, 1] (a baseline, a ground-truth mask, ...).

        ``raw`` defaults to ``grid``; ``fields`` are the other :class:`Heatmap` fields (``options``,
        ``text``, ``sinks``, ...). Evaluation functions then treat it as any method's map.
        """
        grid = np.asarray(grid, dtype=np.float64)
        fields.setdefault("raw", grid)
        fields.setdefault("options", {})
        return cls(grid=grid, image=image, geometry=geometry, method=method, **fields)

    @property
    def image_map(self) -> np.ndarray:
        """``[H, W]`` on the original image; NaN where the processor's crop cut the image."""
        if self._mapped is None or self._mapped[0] is not self.grid:
            self._mapped = (self.grid, self.geometry.grid_to_image(self.grid))
        return self._mapped[1]

    @property
    def peak(self) -> tuple[int, int]:
        """``(x, y)`` of the image map's maximum, in original-image pixels."""
        y, x = np.unravel_index(np.nanargmax(self.image_map), self.image_map.shape)
        return int(x), int(y)

    def overlay(self, alpha: float = 0.5, cmap: str = "jet") -> Image.Image:
        """The original image with the map blended over it (``alpha`` = map opacity; none outside the crop)."""
        from .plotting.heatmaps import blend

        return Image.fromarray(blend(np.asarray(self.image), self.image_map, alpha, cmap))

    def plot(self, ax=None, alpha: float = 0.5, cmap: str = "jet", **kwargs):
        """Draw the overlay (and the words' scores, if any) with matplotlib; returns the axes."""
        from .plotting.heatmaps import plot_heatmap

        return plot_heatmap(self, ax=ax, alpha=alpha, cmap=cmap, **kwargs)

    def tokens_html(self) -> str:
        """The text's word pieces highlighted by relevance (inline HTML, no scripts)."""
        if self.tokens is None or self.token_scores is None:
            return ""
        spans = "".join(
            f'<span title="{score:.2f}" style="background: rgba(255, 80, 0, {0.85 * score:.3f}); '
            f'padding: 1px 0; border-radius: 2px">{html.escape(piece)}</span>'
            for piece, score in zip(self.tokens, self.token_scores)
        )
        return f'<div style="font-family: sans-serif; font-size: 14px; white-space: pre-wrap">{spans}</div>'

    def _repr_html_(self) -> str:
        from .plotting.encode import data_url

        width = min(max(self.image.size[0], 256), 512)
        caption = html.escape(self._describe())
        return (
            f'<div><img src="{data_url(self.overlay())}" style="width: {width}px; image-rendering: pixelated" '
            f'alt="{caption}"/><div style="font-family: sans-serif; font-size: 12px; color: #555">{caption}</div>'
            f"{self.tokens_html()}</div>"
        )

    def _describe(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        parts = [f"{self.method}({options})"]
        if self.text is not None:
            parts.append(f"text={self.text!r}")
        if self.logit is not None:
            parts.append(f"logit={self.logit:.2f}")
        n_sinks = int(self.sinks.sum()) if self.sinks is not None else 0
        if n_sinks:
            parts.append(f"{n_sinks} sink patch(es){' excluded' if self.exclude_sinks else ''}")
        return " · ".join(parts)

    def __repr__(self) -> str:
        return f"Heatmap({self._describe()}, grid={self.grid.shape[0]}x{self.grid.shape[1]}, image={self.image.size})"


def __getattr__(name):
    # The drawing helpers moved to clipviz.plotting.heatmaps (compute apart from pictures); the old
    # names keep working without importing matplotlib at ``import clipviz.heatmaps``.
    if name in ("blend", "colour_table"):
        from .plotting import heatmaps as _drawing

        return getattr(_drawing, name)
    raise AttributeError(f"module 'clipviz.heatmaps' has no attribute {name!r}")
