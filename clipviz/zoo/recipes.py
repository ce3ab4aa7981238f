"""Model sizes and weight transfers for the three bundled shapes models.

All three share one miniature ViT image tower (Dosovitskiy et al. 2021 in CLIP's variant):
64 x 64 images, 8 x 8 patches (an 8 x 8 grid), width 128, 4 layers, 4 heads. The text towers are
each family's own architecture at a similar tiny size: CLIP's causal transformer, Chinese-CLIP's
BERT, AltCLIP's XLM-R with its ``transformation`` head. About 1.2-1.6 M parameters per model.
"""

from __future__ import annotations

IMAGE_SIZE, PATCH_SIZE = 64, 8
WIDTH, MLP_WIDTH, HEADS = 128, 512, 4
VISION_LAYERS, TEXT_LAYERS = 4, 3
MAX_TEXT_LENGTH = 32
PROJECTION_DIM = 128

_VISION = dict(hidden_size=WIDTH, intermediate_size=MLP_WIDTH, num_hidden_layers=VISION_LAYERS,
               num_attention_heads=HEADS, image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)
_BERT_LIKE = dict(hidden_size=WIDTH, intermediate_size=MLP_WIDTH, num_hidden_layers=TEXT_LAYERS,
                  num_attention_heads=HEADS, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def build_config(family: str, tokenizer):
    """A transformers config for ``family`` whose text side fits ``tokenizer``."""
    import transformers

    vocab_size = len(tokenizer)
    if family == "clip":
        text = dict(vocab_size=vocab_size, hidden_size=WIDTH, intermediate_size=MLP_WIDTH,
                    num_hidden_layers=TEXT_LAYERS, num_attention_heads=HEADS,
                    max_position_embeddings=MAX_TEXT_LENGTH, bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        return transformers.CLIPConfig(text_config=text, vision_config=_VISION, projection_dim=PROJECTION_DIM)
    if family == "chinese_clip":
        text = dict(_BERT_LIKE, vocab_size=vocab_size, max_position_embeddings=MAX_TEXT_LENGTH,
                    type_vocab_size=2, pad_token_id=tokenizer.pad_token_id)
        return transformers.ChineseCLIPConfig(text_config=text, vision_config=_VISION,
                                              projection_dim=PROJECTION_DIM)
    if family == "altclip":
        # RoBERTa positions start after the padding index, hence the + 2; project_dim equals the
        # CLIP teacher's text width, since teacher learning regresses onto that vector.
        text = dict(_BERT_LIKE, vocab_size=vocab_size, max_position_embeddings=MAX_TEXT_LENGTH + 2,
                    type_vocab_size=1, pad_token_id=tokenizer.pad_token_id,
                    bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                    project_dim=WIDTH)
        return transformers.AltCLIPConfig(text_config=text, vision_config=_VISION,
                                          projection_dim=PROJECTION_DIM)
    raise ValueError(f"unknown family {family!r}; expected one of clip, chinese_clip, altclip")


def build_model(family: str, tokenizer):
    """A freshly initialised model of ``family`` (SDPA attention for training speed)."""
    import transformers

    classes = {"clip": transformers.CLIPModel, "chinese_clip": transformers.ChineseCLIPModel,
               "altclip": transformers.AltCLIPModel}
    return classes[family]._from_config(build_config(family, tokenizer), attn_implementation="sdpa")


def copy_image_tower(source, target) -> None:
    """Give ``target`` the image tower, image projection and temperature of ``source``.

    The three families' vision towers have identical parameter names, so the shapes-clip tower
    plays the part OpenAI's pretrained ViT plays for Chinese-CLIP and AltCLIP.
    """
    target.vision_model.load_state_dict(source.vision_model.state_dict())
    target.visual_projection.load_state_dict(source.visual_projection.state_dict())
    target.logit_scale.data.copy_(source.logit_scale.data)
