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
    """The modules of one transformer block that hook points attach to."""

    block: nn.Module  # input = resid_pre, output = resid_post
    attention: nn.Module  # the module that calls the attention function (holds the pattern)
    attention_out: nn.Module  # its output is what the attention adds to the residual
    mlp_out: nn.Module  # its output is what the MLP adds to the residual


@dataclass(frozen=True)
class TowerModules:
    embed: nn.Module  # its output is the input to block 0
    blocks: tuple[BlockModules, ...]
    projection: nn.Linear  # its input is the pooled vector, its output the joint embedding


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


def _vision_blocks(model) -> tuple[BlockModules, ...]:
    # CLIP-style pre-LN blocks: residual + self_attn(...), residual + mlp(...)
    return tuple(
        BlockModules(block=layer, attention=layer.self_attn, attention_out=layer.self_attn, mlp_out=layer.mlp)
        for layer in model.vision_model.encoder.layers
    )


def _bert_blocks(layers) -> tuple[BlockModules, ...]:
    # BERT/XLM-R post-LN blocks: LayerNorm(x + dense(attn)); the dense outputs are what is added.
    return tuple(
        BlockModules(
            block=layer,
            attention=layer.attention.self,
            attention_out=layer.attention.output.dense,
            mlp_out=layer.output.dense,
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
        )
    if tower != "text":
        raise ValueError(f"tower must be one of {TOWERS}, not {tower!r}")
    if family == "clip":
        text = model.text_model
        blocks = tuple(
            BlockModules(block=layer, attention=layer.self_attn, attention_out=layer.self_attn, mlp_out=layer.mlp)
            for layer in text.encoder.layers
        )
        return TowerModules(embed=text.embeddings, blocks=blocks, projection=model.text_projection)
    if family == "chinese_clip":
        text = model.text_model
        return TowerModules(
            embed=text.embeddings, blocks=_bert_blocks(text.encoder.layer), projection=model.text_projection
        )
    if family == "altclip":
        roberta = model.text_model.roberta
        return TowerModules(
            embed=roberta.embeddings, blocks=_bert_blocks(roberta.encoder.layers), projection=model.text_projection
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
