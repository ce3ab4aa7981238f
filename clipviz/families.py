"""One adapter per model family: where the blocks, attention modules, poolers and projections live.

Everything family-specific in clipviz is in this file. The rest of the library asks an adapter
"give me the modules behind this hook point" and never looks inside a transformers model itself.

Layouts (transformers 5):

================  =====================================  ==========================================
family            vision tower (all three as CLIP)       text tower
================  =====================================  ==========================================
``clip``          ``vision_model.encoder.layers[i]``     ``text_model.encoder.layers[i]`` (pre-LN, causal)
``chinese_clip``  ``vision_model.encoder.layers[i]``     ``text_model.encoder.layer[i]`` (BERT, post-LN)
``altclip``       ``vision_model.encoder.layers[i]``     ``text_model.roberta.encoder.layers[i]`` (XLM-R)
================  =====================================  ==========================================

Each tower's head (what turns the last residual stream into the joint embedding):

================  ===============================  ==================================================
tower             pooled position                  final norm → (transformation) → projection
================  ===============================  ==================================================
vision (all)      CLS (0)                          ``post_layernorm`` → ``visual_projection``
CLIP text         EOS                              ``final_layer_norm`` → ``text_projection``
Chinese-CLIP text [CLS] (0)                        (none) → ``text_projection``
AltCLIP text      <s> (0)                          ``pre_LN`` → ``transformation`` → ``text_projection``
================  ===============================  ==================================================

Blocks are either pre-LN (CLIP style: ``x + attn(ln1(x))``, then ``+ mlp(ln2(·))``) or post-LN
(BERT/XLM-R style: ``LN_a(x + attn(x))``, then ``LN_m(· + mlp(·))``). :class:`BlockModules` names
both kinds of norm; the ones a block does not have are ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

SUPPORTED_FAMILIES = ("clip", "chinese_clip", "altclip")
TOWERS = ("vision", "text")


class UnsupportedModelError(ValueError):
    """The checkpoint is not one of the CLIP families clipviz wraps."""


@dataclass(frozen=True)
class BlockModules:
    """The modules of one transformer block: hook points attach to them, analyses read their weights."""

    block: nn.Module  # input = resid_pre, output = resid_post
    attention: nn.Module  # the module that calls the attention function (holds the pattern)
    attention_out: nn.Module  # its output is what the attention adds to the residual
    mlp_out: nn.Module  # its output is what the MLP adds to the residual
    q: nn.Linear | None = None  # query projection, d_model -> n_heads * d_head
    k: nn.Linear | None = None
    v: nn.Linear | None = None
    o: nn.Linear | None = None  # output projection; its input is hook_z flattened over heads
    attn_norm: nn.LayerNorm | None = None  # pre-LN: applied to the residual before attention
    mlp_norm: nn.LayerNorm | None = None  # pre-LN: applied to the residual before the MLP
    post_attn_norm: nn.LayerNorm | None = None  # post-LN: LN(resid + attention output)
    post_mlp_norm: nn.LayerNorm | None = None  # post-LN: LN(resid + MLP output)
    n_heads: int = 0

    @property
    def post_ln(self) -> bool:
        """True for BERT/XLM-R style blocks (the norms sit after the residual additions)."""
        return self.post_attn_norm is not None


@dataclass(frozen=True)
class TowerModules:
    embed: nn.Module  # its output is the input to block 0
    blocks: tuple[BlockModules, ...]
    projection: nn.Linear  # its input is the pooled vector, its output the joint embedding
    final_norm: nn.LayerNorm | None = None  # applied to the last residual before pooling (None: none)
    transformation: nn.Linear | None = None  # AltCLIP's text transformation between norm and projection
    pooling: str = "first"  # "first": token 0 (CLS / [CLS] / <s>); "eos": CLIP's EOS token

    def head(self, pooled_resid):
        """The tower's own head on a residual state already taken at the pooled position: ``[..., D]``.

        Pre-normalisation, exactly as ``get_image_features`` / ``get_text_features`` compute it.
        """
        x = pooled_resid
        if self.final_norm is not None:
            x = self.final_norm(x)
        if self.transformation is not None:
            x = self.transformation(x)
        return self.projection(x)


def family_of(config) -> str:
    """The clipviz family name of a transformers config, or a clear error."""
    model_type = getattr(config, "model_type", None)
    if model_type in SUPPORTED_FAMILIES:
        return model_type
    raise UnsupportedModelError(
        f"clipviz cannot wrap a model of type {model_type!r}. Supported families: "
        f"{', '.join(SUPPORTED_FAMILIES)} (CLIPModel, ChineseCLIPModel, AltCLIPModel). "
        "Load a checkpoint of one of these families, e.g. 'openai/clip-vit-base-patch32'."
    )


def _clip_blocks(layers) -> tuple[BlockModules, ...]:
    # CLIP-style pre-LN blocks: residual + self_attn(layer_norm1(.)), residual + mlp(layer_norm2(.))
    return tuple(
        BlockModules(
            block=layer,
            attention=layer.self_attn,
            attention_out=layer.self_attn,
            mlp_out=layer.mlp,
            q=layer.self_attn.q_proj,
            k=layer.self_attn.k_proj,
            v=layer.self_attn.v_proj,
            o=layer.self_attn.out_proj,
            attn_norm=layer.layer_norm1,
            mlp_norm=layer.layer_norm2,
            n_heads=layer.self_attn.num_heads,
        )
        for layer in layers
    )


def _vision_blocks(model) -> tuple[BlockModules, ...]:
    return _clip_blocks(model.vision_model.encoder.layers)


def _bert_blocks(layers) -> tuple[BlockModules, ...]:
    # BERT/XLM-R post-LN blocks: LayerNorm(x + dense(attn)); the dense outputs are what is added.
    return tuple(
        BlockModules(
            block=layer,
            attention=layer.attention.self,
            attention_out=layer.attention.output.dense,
            mlp_out=layer.output.dense,
            q=layer.attention.self.query,
            k=layer.attention.self.key,
            v=layer.attention.self.value,
            o=layer.attention.output.dense,
            post_attn_norm=layer.attention.output.LayerNorm,
            post_mlp_norm=layer.output.LayerNorm,
            n_heads=layer.attention.self.num_attention_heads,
        )
        for layer in layers
    )


def tower_modules(model, family: str, tower: str) -> TowerModules:
    """The modules behind the hook points of one tower of a loaded model."""
    if tower == "vision":
        return TowerModules(
            embed=model.vision_model.pre_layrnorm,
            blocks=_vision_blocks(model),
            projection=model.visual_projection,
            final_norm=model.vision_model.post_layernorm,
        )
    if tower != "text":
        raise ValueError(f"tower must be one of {TOWERS}, not {tower!r}")
    if family == "clip":
        text = model.text_model
        return TowerModules(
            embed=text.embeddings,
            blocks=_clip_blocks(text.encoder.layers),
            projection=model.text_projection,
            final_norm=text.final_layer_norm,  # position-wise, so norm-then-pool == pool-then-norm
            pooling="eos",
        )
    if family == "chinese_clip":
        text = model.text_model  # get_text_features projects last_hidden_state[:, 0] (no pooler, no norm)
        return TowerModules(
            embed=text.embeddings, blocks=_bert_blocks(text.encoder.layer), projection=model.text_projection
        )
    if family == "altclip":
        text = model.text_model
        roberta = text.roberta
        return TowerModules(
            embed=roberta.embeddings,
            blocks=_bert_blocks(roberta.encoder.layers),
            projection=model.text_projection,
            final_norm=text.pre_LN,
            transformation=text.transformation,
        )
    raise UnsupportedModelError(f"unknown family {family!r}; supported: {', '.join(SUPPORTED_FAMILIES)}")


def text_pooling_positions(family: str, input_ids, eos_token_id: int | None):
    """Index of the token each text is pooled from: EOS for CLIP, [CLS]/<s> (0) otherwise.

    Mirrors ``CLIPTextTransformer.forward``: configs from before transformers PR #24773 carry
    ``eos_token_id == 2`` and pool at the highest token id instead.
    """
    import torch

    if family != "clip":
        return torch.zeros(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
    ids = input_ids.to(torch.int)
    if eos_token_id == 2 or eos_token_id is None:
        return ids.argmax(dim=-1).long()
    return (ids == eos_token_id).int().argmax(dim=-1).long()
