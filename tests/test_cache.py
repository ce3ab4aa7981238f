"""Memory controls and look-ups of the activation cache."""

import pytest
import torch

from clipviz.families import text_pooling_positions
from clipviz.hooks import clipviz_hooks_on
from clipviz.model import CacheTooLargeError


def test_cls_rows_are_rows_of_the_full_pattern(tiny_hooked, family, photos, texts):
    model = tiny_hooked[family]
    _, full = model.run_with_cache(images=photos, texts=texts)
    _, rows = model.run_with_cache(images=photos, texts=texts, attention_rows="cls")
    vision = rows["pattern", 1]
    assert vision.shape == (3, model.n_heads("vision"), full["pattern", 1].shape[-1])
    torch.testing.assert_close(vision, full["pattern", 1][:, :, 0, :])
    eos = model.model.config.text_config.eos_token_id
    pooled = text_pooling_positions(family, model.tokenize(texts)["input_ids"], eos)
    expected = full["pattern", 0, "text"][torch.arange(3), :, pooled, :]
    torch.testing.assert_close(rows["pattern", 0, "text"], expected)
    if family == "clip":
        assert (pooled > 0).all()  # EOS, not the first token
    assert rows.nbytes < full.nbytes


def test_towers_layers_heads_and_dtype(tiny_hooked, photos, texts):
    model = tiny_hooked["clip"]
    _, full = model.run_with_cache(images=photos, texts=texts)
    _, cache = model.run_with_cache(
        images=photos, texts=texts, towers=["vision"], layers=[1], heads=[0, 2], cache_dtype=torch.float16
    )
    assert all(name.startswith("vision.") for name in cache)
    assert cache.layers("vision") == [1]
    assert cache["pattern", 1].dtype == torch.float16
    torch.testing.assert_close(cache["pattern", 1].float(), full["pattern", 1][:, [0, 2]], atol=1e-3, rtol=1e-3)
    assert "vision.hook_pooled" in cache  # tower-level points are kept when layers are narrowed
    assert model.run_with_cache(texts=texts, heads=1)[1]["pattern", 0, "text"].shape[1] == 1


def test_shorthands_and_stack(tiny_hooked, photos):
    model = tiny_hooked["altclip"]
    _, cache = model.run_with_cache(images=photos)
    assert cache["resid_post", 1] is cache["vision.blocks.1.hook_resid_post"]
    assert cache["embed"] is cache["vision.hook_embed"]
    assert cache.stack("resid_post").shape[0] == model.n_layers("vision")
    assert cache.nbytes == sum(t.numel() * t.element_size() for t in cache.values())
    assert all(not t.requires_grad for t in cache.values())
    with pytest.raises(KeyError, match="closest|Closest|unknown"):
        cache["vision.blocks.9.hook_resid_post"]


def test_over_budget_capture_is_refused_before_running(tiny_hooked, photos):
    model = tiny_hooked["clip"]
    calls = []
    with model.hooks([("vision.hook_embed", lambda t, hook: calls.append(1))]):
        with pytest.raises(CacheTooLargeError, match="attention_rows='cls'"):
            model.run_with_cache(images=photos, max_bytes=1000)
    assert calls == []  # the model never ran
    assert clipviz_hooks_on(model.model) == 0
    _, narrow = model.run_with_cache(images=photos, names_filter="vision.hook_pooled", max_bytes=1000)
    assert narrow.nbytes <= 1000


def test_estimate_matches_what_is_stored(tiny_hooked, photos, texts):
    model = tiny_hooked["chinese_clip"]
    _, cache = model.run_with_cache(images=photos, texts=texts)
    with pytest.raises(CacheTooLargeError):
        model.run_with_cache(images=photos, texts=texts, max_bytes=cache.nbytes - 1)
    model.run_with_cache(images=photos, texts=texts, max_bytes=cache.nbytes)


def test_bad_arguments(tiny_hooked, photos):
    model = tiny_hooked["clip"]
    with pytest.raises(ValueError, match="nothing to run"):
        model.run_with_cache()
    with pytest.raises(ValueError, match="texts="):
        model.run_with_cache(images=photos, names_filter=["text.hook_pooled"])
    with pytest.raises(ValueError, match="attention_rows"):
        model.run_with_cache(images=photos, attention_rows="first")
    with pytest.raises(ValueError, match="tower"):
        model.run_with_cache(images=photos, towers=["audio"])
