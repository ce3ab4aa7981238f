"""Logit lens (model.project, cache.accumulated_resid) and the family adapter's tower heads."""

import pytest
import torch


def test_adapter_head_is_the_models_own_head(tiny_hooked, family, photos, texts):
    """TowerModules.head on the pooled last residual == get_image/text_features (pre-normalisation)."""
    model = tiny_hooked[family]
    pixels, tokens = model.pixel_values(photos), model.tokenize(texts)
    with torch.no_grad():
        hf = model.model
        vision = hf.vision_model(pixel_values=pixels).last_hidden_state[:, 0]
        expected = hf.get_image_features(pixel_values=pixels).pooler_output
        torch.testing.assert_close(model.modules("vision").head(vision), expected)
        _, cache = model.run_with_cache(texts=texts, names_filter=lambda n: n.endswith("resid_post"))
        last = cache["resid_post", -1, "text"]
        pos = cache.pooled_positions["text"]
        pooled = last[torch.arange(len(texts)), pos]
        expected = hf.get_text_features(**tokens).pooler_output
        torch.testing.assert_close(model.modules("text").head(pooled), expected, rtol=1e-5, atol=1e-6)


def test_project_last_resid_gives_the_embeddings(tiny_hooked, family, photos, texts):
    model = tiny_hooked[family]
    out, cache = model.run_with_cache(images=photos, texts=texts)
    image = model.project("vision", cache["resid_post", -1])
    torch.testing.assert_close(image, out.image_embeds, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(image, model.image_embeds(photos), rtol=1e-5, atol=1e-6)
    text = model.project("text", cache["resid_post", -1, "text"], positions=cache.pooled_positions["text"])
    torch.testing.assert_close(text, model.text_embeds(texts), rtol=1e-5, atol=1e-6)
    raw = model.project("vision", cache["resid_post", -1][:, 0], normalise=False)  # already pooled
    torch.testing.assert_close(raw / raw.norm(dim=-1, keepdim=True), image)


def test_accumulated_resid_ends_at_the_embedding(tiny_hooked, family, photos, texts):
    model = tiny_hooked[family]
    out, cache = model.run_with_cache(images=photos, texts=texts)
    for tower, embeds in (("vision", out.image_embeds), ("text", out.text_embeds)):
        lens, labels = cache.accumulated_resid(tower, return_labels=True)
        assert lens.shape == (model.n_layers(tower) + 1, embeds.shape[0], embeds.shape[1])
        assert labels[0] == "embed" and labels[-1] == f"{model.n_layers(tower) - 1}_resid_post"
        torch.testing.assert_close(lens[-1], embeds, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(lens.norm(dim=-1), torch.ones(lens.shape[:2]))
        assert not torch.allclose(lens[0], lens[-1])  # the lens sees the state change


def test_negative_layers_in_the_cache(tiny_hooked, photos):
    model = tiny_hooked["clip"]
    _, cache = model.run_with_cache(images=photos)
    n = model.n_layers("vision")
    assert cache["pattern", -1] is cache["pattern", n - 1]
    assert cache["vision.blocks.-2.hook_resid_post"] is cache["resid_post", 0]
    assert cache.resolve_layer(-1) == n - 1
    with pytest.raises(KeyError, match="out of range"):
        cache["pattern", -n - 1]


def test_project_errors_say_what_to_pass(tiny_hooked, photos, texts):
    model = tiny_hooked["clip"]
    _, cache = model.run_with_cache(texts=texts, names_filter="text.blocks.1.hook_resid_post")
    with pytest.raises(ValueError, match="positions="):
        model.project("text", cache["resid_post", 1, "text"])
    with pytest.raises(ValueError, match="d_model"):
        model.project("vision", torch.zeros(2, 3))
    with pytest.raises(KeyError, match="accumulated_resid needs"):
        cache.accumulated_resid("text")
