"""User hooks: they see and change activations, and never outlive their ``with`` block."""

import pytest
import torch

from clipviz.hooks import UnknownHookError, clipviz_hooks_on


def test_hook_sees_named_activation(tiny_hooked, photos):
    model = tiny_hooked["clip"]
    seen = {}

    def record(tensor, *, hook):
        seen[hook.name] = tensor.shape

    with model.hooks([("vision.blocks.1.attn.hook_pattern", record), ("vision.hook_pooled", record)]):
        model.image_embeds(photos)
    grid = model.grid_size[0] * model.grid_size[1] + 1
    assert seen == {
        "vision.blocks.1.attn.hook_pattern": (3, model.n_heads("vision"), grid, grid),
        "vision.hook_pooled": (3, model.model.config.vision_config.hidden_size),
    }


def test_hook_can_replace_an_activation(tiny_hooked, family, photos):
    model = tiny_hooked[family]
    before = model.image_embeds(photos)

    def uniform_attention(pattern, *, hook):
        return torch.full_like(pattern, 1.0 / pattern.shape[-1])

    with model.hooks([(lambda n: n.startswith("vision") and n.endswith("hook_pattern"), uniform_attention)]):
        ablated = model.image_embeds(photos)
    assert not torch.allclose(before, ablated, atol=1e-4)
    torch.testing.assert_close(model.image_embeds(photos), before)  # gone again


def test_gradients_flow_through_the_pattern(tiny_hooked, photos, texts):
    model = tiny_hooked["clip"]
    kept = []

    def keep(pattern, *, hook):
        pattern.retain_grad()
        kept.append(pattern)

    with torch.enable_grad(), model.hooks([("vision.blocks.0.attn.hook_pattern", keep)]):
        image = model.image_features(model.pixel_values(photos[:1]))
        score = (image @ model.text_features(model.tokenize(texts[:1])).T).sum()
        score.backward()
    assert kept[0].grad is not None and kept[0].grad.abs().sum() > 0
    model.model.zero_grad(set_to_none=True)


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
def test_no_hook_left_after_a_hook_raises(tiny_hooked, family, photos, error):
    model = tiny_hooked[family]

    def explode(tensor, *, hook):
        raise error("from a user hook")

    with pytest.raises(error):
        with model.hooks([(n, explode) for n in model.hook_names() if n.startswith("vision")]):
            model.image_embeds(photos)
    assert clipviz_hooks_on(model.model) == 0


def test_no_hook_left_after_the_model_raises(tiny_hooked, photos):
    model = tiny_hooked["clip"]
    with pytest.raises(ValueError):
        with model.hooks([(n, lambda t, hook: None) for n in model.hook_names()]):
            assert clipviz_hooks_on(model.model) > 0
            model.image_features(torch.zeros(1, 3, 7, 7))  # wrong size: the model itself fails
    assert clipviz_hooks_on(model.model) == 0


def test_no_hook_left_after_run_with_cache_fails(tiny_hooked, photos):
    model = tiny_hooked["clip"]
    with pytest.raises(ValueError):
        model.run_with_cache(pixel_values=torch.zeros(1, 3, 7, 7))
    assert clipviz_hooks_on(model.model) == 0
    # transformers' own capture hooks (installed by output_attentions=True) are not counted as ours
    model.model(pixel_values=model.pixel_values(photos), input_ids=model.tokenize("a")["input_ids"],
                output_attentions=True)
    assert clipviz_hooks_on(model.model) == 0


def test_nested_hook_blocks_compose(tiny_hooked, photos):
    model = tiny_hooked["clip"]
    calls = []
    name = "vision.blocks.0.hook_resid_post"
    with model.hooks([(name, lambda t, hook: calls.append("outer"))]):
        with model.hooks([(name, lambda t, hook: calls.append("inner"))]):
            model.image_embeds(photos)
        model.image_embeds(photos)
    model.image_embeds(photos)
    assert calls == ["outer", "inner", "outer"]


def test_unknown_hook_name_lists_close_names(tiny_hooked):
    model = tiny_hooked["clip"]
    with pytest.raises(UnknownHookError, match="vision.blocks.0.attn.hook_pattern"):
        with model.hooks([("vision.blocks.0.attn.hook_patern", lambda t, hook: None)]):
            pass
    with pytest.raises(UnknownHookError, match="closest|Closest"):
        model.run_with_cache(texts=["a"], names_filter=["text.block.0.hook_resid_post"])
    assert clipviz_hooks_on(model.model) == 0


def test_hook_returning_a_wrong_shape_is_a_clear_error(tiny_hooked, photos):
    model = tiny_hooked["clip"]
    with pytest.raises(ValueError, match="same shape"):
        with model.hooks([("vision.hook_embed", lambda t, hook: t[:, :1])]):
            model.image_embeds(photos)
    assert clipviz_hooks_on(model.model) == 0
