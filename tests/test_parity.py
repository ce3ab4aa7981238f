"""HookedCLIP gives exactly what the transformers model gives, and captures the real attention."""

import pytest
import torch
from transformers import AutoModel

TOL = 1e-5


@pytest.fixture
def eager_reference(tiny_models, family):
    return AutoModel.from_pretrained(tiny_models[family], attn_implementation="eager").eval()


def _reference_outputs(reference, model, photos, texts):
    pixels, tokens = model.pixel_values(photos), model.tokenize(texts)
    with torch.no_grad():
        return reference(pixel_values=pixels, **tokens, output_attentions=True, output_hidden_states=True)


def test_embeddings_match_get_features(tiny_hooked, family, eager_reference, photos, texts):
    model = tiny_hooked[family]
    with torch.no_grad():
        image = eager_reference.get_image_features(pixel_values=model.pixel_values(photos)).pooler_output
        text = eager_reference.get_text_features(**model.tokenize(texts)).pooler_output
    torch.testing.assert_close(model.image_embeds(photos), image / image.norm(dim=-1, keepdim=True), atol=TOL, rtol=0)
    torch.testing.assert_close(model.text_embeds(texts), text / text.norm(dim=-1, keepdim=True), atol=TOL, rtol=0)
    assert torch.allclose(model.image_embeds(photos).norm(dim=-1), torch.ones(len(photos)), atol=1e-6)


def test_logits_match_logits_per_image(tiny_hooked, family, eager_reference, photos, texts):
    model = tiny_hooked[family]
    reference = _reference_outputs(eager_reference, model, photos, texts)
    logits = model.logits(photos, texts)
    assert logits.shape == (len(photos), len(texts))
    torch.testing.assert_close(logits, reference.logits_per_image, atol=1e-4, rtol=1e-5)


def test_captured_patterns_and_states_equal_eager(tiny_hooked, family, eager_reference, photos, texts):
    model = tiny_hooked[family]
    reference = _reference_outputs(eager_reference, model, photos, texts)
    out, cache = model.run_with_cache(images=photos, texts=texts)
    towers = {"vision": reference.vision_model_output, "text": reference.text_model_output}
    for tower, ref in towers.items():
        assert len(ref.attentions) == model.n_layers(tower)
        torch.testing.assert_close(cache[f"{tower}.hook_embed"], ref.hidden_states[0], atol=TOL, rtol=0)
        for layer in range(model.n_layers(tower)):
            pattern = cache[f"{tower}.blocks.{layer}.attn.hook_pattern"]
            torch.testing.assert_close(pattern, ref.attentions[layer], atol=TOL, rtol=0)
            torch.testing.assert_close(
                cache[f"{tower}.blocks.{layer}.hook_resid_post"], ref.hidden_states[layer + 1], atol=TOL, rtol=0
            )
            torch.testing.assert_close(
                cache[f"{tower}.blocks.{layer}.hook_resid_pre"], ref.hidden_states[layer], atol=TOL, rtol=0
            )
    torch.testing.assert_close(out.logits_per_image, reference.logits_per_image, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(cache["vision.hook_embeds"], out.image_embeds)


def test_text_masks_are_honoured(tiny_hooked, family, texts):
    """Padded keys get zero attention; CLIP's text tower is causal as well."""
    model = tiny_hooked[family]
    tokens = model.tokenize(texts)
    _, cache = model.run_with_cache(texts=texts, names_filter=lambda n: n.endswith("hook_pattern"))
    pattern = cache["pattern", 0, "text"]  # [batch, head, query, key]
    padding = tokens["attention_mask"] == 0
    assert padding.any(), "the test texts must have different lengths"
    keys_padded = padding[:, None, None, :].expand_as(pattern)
    assert pattern[keys_padded].abs().max() == 0
    if family == "clip":
        future = torch.triu(torch.ones(pattern.shape[-2:], dtype=torch.bool), diagonal=1)
        assert pattern[..., future].abs().max() == 0


def test_capture_does_not_change_embeddings(tiny_hooked, family, photos, texts):
    model = tiny_hooked[family]
    plain_images, plain_texts = model.image_embeds(photos), model.text_embeds(texts)
    out, _ = model.run_with_cache(images=photos, texts=texts)
    torch.testing.assert_close(out.image_embeds, plain_images, atol=TOL, rtol=0)
    torch.testing.assert_close(out.text_embeds, plain_texts, atol=TOL, rtol=0)


def test_pooled_is_the_projection_input(tiny_hooked, family, photos, texts):
    model = tiny_hooked[family]
    _, cache = model.run_with_cache(images=photos, texts=texts, names_filter=lambda n: "pooled" in n or "embeds" in n)
    projected = model.model.visual_projection(cache["pooled", "vision"])
    torch.testing.assert_close(cache["embeds", "vision"], projected / projected.norm(dim=-1, keepdim=True))
    projected = model.model.text_projection(cache["pooled", "text"])
    torch.testing.assert_close(cache["embeds", "text"], projected / projected.norm(dim=-1, keepdim=True))
