"""Decomposition: a tower's embedding as a sum of direct contributions of its parts.

A transformer tower writes its output into one residual stream, so the pooled final state is a sum:
the input embedding, plus every block's attention output (itself a sum over heads, and each head's
a sum over the positions it attends to), plus every block's MLP output. Gandelsman, Efros &
Steinhardt ("Interpreting CLIP's image representation via text-based decomposition", ICLR 2024 —
TextSpan) read CLIP's image embedding this way: the tower's head (final LayerNorm, projection) is
linear once the LayerNorm's scale is fixed to the value it actually had on this input, and the
mean-centering it applies is applied to each part. So every part lands in the joint space, and

    embed + Σ_L mlp_L + Σ_L Σ_h head_{L,h} + remainder == the model's own (pre-normalisation) embedding

holds to float precision. ``remainder`` is what belongs to no part: the attention output biases, the
LayerNorms' β shifts and the biases of AltCLIP's ``transformation`` / the projection.

Post-LN text towers (Chinese-CLIP's BERT, AltCLIP's XLM-R) normalise *after* each residual addition
(``LN(x + attn(x))``, ``LN(· + mlp(·))``). Each of those LayerNorms, at the pooled token and with its
actual statistics, is the same kind of linear map (centre, scale by γ/σ) plus a β that goes to the
remainder, so every part is carried through every later norm and the sum stays exact.

Only the pooled token matters (CLS for vision and Chinese-CLIP/AltCLIP text, EOS for CLIP text):
every map after an attention layer is position-wise. Per-position contributions of a head — how
much of its output came from each attended token, ``pattern[h, pooled, k] · v_h[k] W_O,h`` — are
computed for the layers in ``positions=`` only (memory stays bounded; they sum to the head's part).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..families import TOWERS


@dataclass
class Decomposition:
    """Direct contributions to one tower's projected (pre-normalisation) embedding, in the joint space.

    Shapes (``D`` = joint dimension): ``embed`` ``[batch, D]``, ``mlps`` ``[batch, layer, D]``,
    ``heads`` ``[batch, layer, head, D]``, ``positions[L]`` ``[batch, head, pos, D]`` for the layers
    asked for, ``remainder`` ``[batch, D]`` (biases and LayerNorm shifts), ``total`` ``[batch, D]``
    (the model's own embedding before unit normalisation). ``sum()`` rebuilds ``total``.
    """

    tower: str
    embed: torch.Tensor
    mlps: torch.Tensor
    heads: torch.Tensor
    remainder: torch.Tensor
    total: torch.Tensor
    positions: dict[int, torch.Tensor] = field(default_factory=dict)
    pooled_positions: torch.Tensor | None = None  # [batch] the pooled token's index

    @property
    def n_layers(self) -> int:
        return self.heads.shape[1]

    @property
    def n_heads(self) -> int:
        return self.heads.shape[2]

    def sum(self) -> torch.Tensor:
        """embed + every MLP + every head + remainder: ``[batch, D]``, equal to ``total``."""
        return self.embed + self.mlps.sum(1) + self.heads.sum((1, 2)) + self.remainder

    def relative_error(self) -> float:
        """max over the batch of ‖sum() − total‖ / ‖total‖."""
        return float(((self.sum() - self.total).norm(dim=-1) / self.total.norm(dim=-1)).max())

    def head(self, layer: int, head: int) -> torch.Tensor:
        """One head's contribution over the batch, ``[batch, D]`` (negative layers count from the end)."""
        return self.heads[:, _resolve(layer, self.n_layers), head]

    def __repr__(self) -> str:
        b, n_layers, n_heads, d = self.heads.shape
        pos = f", positions for layers {sorted(self.positions)}" if self.positions else ""
        return (
            f"Decomposition({self.tower}: batch={b}, {n_layers} layers × {n_heads} heads into D={d}{pos}; "
            f"relative error {self.relative_error():.1e})"
        )


def _resolve(layer: int, n_layers: int) -> int:
    if not -n_layers <= layer < n_layers:
        raise IndexError(f"layer {layer} is out of range for {n_layers} blocks (use -{n_layers}..{n_layers - 1})")
    return layer % n_layers


def _layer_norm_map(norm, actual_input: torch.Tensor):
    """The LayerNorm ``norm`` at the values it saw (``actual_input`` ``[batch, d]``) as a linear map
    ``c ↦ γ ⊙ (c − mean(c)) / σ`` applied to parts ``[batch, ..., d]``, and its shift ``β``."""
    x = actual_input.double()
    sigma = (x.var(dim=-1, unbiased=False, keepdim=True) + norm.eps).sqrt()  # [batch, 1]
    gamma = norm.weight.detach().double().cpu()
    beta = norm.bias.detach().double().cpu() if norm.bias is not None else torch.zeros_like(gamma)

    def apply(part: torch.Tensor) -> torch.Tensor:
        scale = sigma.view(sigma.shape[0], *([1] * (part.dim() - 1)))
        return gamma * (part - part.mean(dim=-1, keepdim=True)) / scale

    return apply, beta


def _linear_map(linear):
    weight = linear.weight.detach().double().cpu()
    bias = linear.bias.detach().double().cpu() if linear.bias is not None else None
    return (lambda part: part @ weight.t()), bias


class _Parts:
    """The running set of parts at the pooled token: every map is applied to all of them at once."""

    def __init__(self, embed: torch.Tensor):
        self.embed = embed
        self.mlps: list[torch.Tensor] = []
        self.heads: list[torch.Tensor] = []
        self.positions: dict[int, torch.Tensor] = {}
        self.remainder = torch.zeros_like(embed)

    def map(self, fn, shift=None) -> None:
        self.embed = fn(self.embed)
        self.mlps = [fn(p) for p in self.mlps]
        self.heads = [fn(p) for p in self.heads]
        self.positions = {layer: fn(p) for layer, p in self.positions.items()}
        self.remainder = fn(self.remainder)
        if shift is not None:
            self.remainder = self.remainder + shift


def _names(model, tower: str, position_layers: list[int]) -> list[str]:
    post_ln = model.modules(tower).blocks[0].post_ln
    names = [f"{tower}.hook_embed"]
    for layer in range(model.n_layers(tower)):
        prefix = f"{tower}.blocks.{layer}"
        if post_ln or layer in position_layers:
            names.append(f"{prefix}.hook_resid_pre")
        if layer in position_layers:
            names.append(f"{prefix}.attn.hook_pattern")
        names.append(f"{prefix}.attn.hook_z")
        if post_ln:
            names.append(f"{prefix}.attn.hook_out")
        names.append(f"{prefix}.hook_mlp_out")
    names.append(f"{tower}.blocks.{model.n_layers(tower) - 1}.hook_resid_post")
    return names


def decompose_cache(model, cache, tower: str, positions=()) -> Decomposition:
    """Decompose from a cache that holds what :func:`decompose` captures (see there)."""
    modules = model.modules(tower)
    n_layers = model.n_layers(tower)
    position_layers = sorted({_resolve(int(layer), n_layers) for layer in positions})
    pooled = cache.pooled_positions[tower]
    batch = torch.arange(pooled.shape[0])

    def at_pooled(name: str) -> torch.Tensor:
        return cache[name][batch, pooled].double()

    last = cache[f"{tower}.blocks.{n_layers - 1}.hook_resid_post"]
    with torch.no_grad():
        total = model.project(tower, last, positions=pooled, normalise=False).cpu()
        parts = _Parts(at_pooled(f"{tower}.hook_embed"))
        for layer, block in enumerate(modules.blocks):
            prefix = f"{tower}.blocks.{layer}"
            n_heads = block.n_heads
            w_out = block.o.weight.detach().double().cpu()  # [d_model, head * d_head]
            w_out = w_out.view(w_out.shape[0], n_heads, -1)  # [d_model, head, d_head]
            z = at_pooled(f"{prefix}.attn.hook_z")  # [batch, head, d_head]
            parts.heads.append(torch.einsum("bhe,dhe->bhd", z, w_out))
            parts.mlps.append(torch.zeros_like(parts.embed))  # placeholder: the MLP writes after the heads
            if layer in position_layers:
                pattern = cache[f"{prefix}.attn.hook_pattern"]
                row = pattern if cache.attention_rows == "cls" else pattern[batch, :, pooled]  # [batch, head, key]
                resid_pre = cache[f"{prefix}.hook_resid_pre"].to(model.device, model.dtype)
                normed = block.attn_norm(resid_pre) if block.attn_norm is not None else resid_pre
                value = block.v(normed).double().cpu()  # [batch, key, head * d_head]
                value = value.view(*value.shape[:2], n_heads, -1)
                per_key = torch.einsum("bhk,bkhe->bhke", row.double(), value)  # [batch, head, key, d_head]
                parts.positions[layer] = torch.einsum("bhke,dhe->bhkd", per_key, w_out)
            if block.o.bias is not None:
                parts.remainder = parts.remainder + block.o.bias.detach().double().cpu()
            if block.post_ln:
                mid_input = at_pooled(f"{prefix}.hook_resid_pre") + at_pooled(f"{prefix}.attn.hook_out")
                parts.map(*_layer_norm_map(block.post_attn_norm, mid_input))
                mid = block.post_attn_norm(mid_input.to(model.device, model.dtype)).double().cpu()
                mlp_out = at_pooled(f"{prefix}.hook_mlp_out")
                parts.mlps[layer] = mlp_out
                parts.map(*_layer_norm_map(block.post_mlp_norm, mid + mlp_out))
            else:
                parts.mlps[layer] = at_pooled(f"{prefix}.hook_mlp_out")
        if modules.final_norm is not None:
            parts.map(*_layer_norm_map(modules.final_norm, at_pooled(f"{tower}.blocks.{n_layers - 1}.hook_resid_post")))
        for linear in (modules.transformation, modules.projection):
            if isinstance(linear, torch.nn.Linear):  # a single tower without projection has nn.Identity
                parts.map(*_linear_map(linear))
    as_float = {"dtype": total.dtype}
    return Decomposition(
        tower=tower,
        embed=parts.embed.to(**as_float),
        mlps=torch.stack(parts.mlps, 1).to(**as_float),
        heads=torch.stack(parts.heads, 1).to(**as_float),
        remainder=parts.remainder.to(**as_float),
        total=total,
        positions={layer: p.to(**as_float) for layer, p in parts.positions.items()},
        pooled_positions=pooled,
    )


def decompose(model, images=None, texts=None, *, pixel_values=None, positions=(), max_bytes=None):
    """Direct contributions of every part of a tower to its embedding (TextSpan's decomposition).

    ``decompose(model, images=...)`` → a :class:`Decomposition` of the vision tower;
    ``texts=...`` → of the text tower; both → ``{"vision": ..., "text": ...}``.
    ``positions=[-1, -2]``: also split those layers' heads over the tokens they attend to
    (``Decomposition.positions[L]``, ``[batch, head, pos, D]``; for vision, position 0 is CLS and
    1.. the patches). The capture goes through ``run_with_cache``, so its memory budget check
    (``max_bytes=``, default ``model.max_cache_bytes``) refuses oversized batches before running.

    Exact: ``d.sum()`` equals ``d.total`` (the model's own pre-normalisation embedding; divide by its
    norm for the unit-norm ``image_embeds``) up to float rounding, for every family and both towers.
    """
    given = {"vision": images is not None or pixel_values is not None, "text": texts is not None}
    if not any(given.values()):
        raise ValueError("nothing to decompose: pass images= (or pixel_values=) and/or texts=")
    result = {}
    for tower in TOWERS:
        if not given[tower]:
            continue
        n_layers = model.n_layers(tower)
        layers = sorted({_resolve(int(layer), n_layers) for layer in positions})
        names = _names(model, tower, layers)
        inputs = {"images": images, "pixel_values": pixel_values} if tower == "vision" else {"texts": texts}
        _, cache = model.run_with_cache(
            **inputs, names_filter=names, attention_rows="cls", max_bytes=max_bytes, cache_dtype=torch.float32
        )
        result[tower] = decompose_cache(model, cache, tower, positions=layers)
    return result if len(result) == 2 else next(iter(result.values()))
