"""Golden hook names: the vocabulary notebooks teach is the same for every family."""


def expected_names(tower: str, layers: int) -> list[str]:
    names = [f"{tower}.hook_embed"]
    for layer in range(layers):
        names += [
            f"{tower}.blocks.{layer}.hook_resid_pre",
            f"{tower}.blocks.{layer}.attn.hook_pattern",
            f"{tower}.blocks.{layer}.attn.hook_z",
            f"{tower}.blocks.{layer}.attn.hook_out",
            f"{tower}.blocks.{layer}.hook_mlp_out",
            f"{tower}.blocks.{layer}.hook_resid_post",
        ]
    return names + [f"{tower}.hook_pooled", f"{tower}.hook_embeds"]


GOLDEN_TWO_LAYERS = expected_names("vision", 2) + expected_names("text", 2)


def test_golden_hook_names(tiny_hooked, family):
    model = tiny_hooked[family]
    assert model.hook_names() == GOLDEN_TWO_LAYERS
    assert model.hook_names("text") == expected_names("text", 2)
    assert model.hook_names()[:4] == [  # spelled out once, so a change to expected_names shows too
        "vision.hook_embed",
        "vision.blocks.0.hook_resid_pre",
        "vision.blocks.0.attn.hook_pattern",
        "vision.blocks.0.attn.hook_z",
    ]


def test_every_point_fires_once_per_forward(tiny_hooked, family, photos, texts):
    from collections import Counter

    model = tiny_hooked[family]
    out, cache = model.run_with_cache(images=photos, texts=texts)
    assert list(cache) == GOLDEN_TWO_LAYERS
    # a cache keeps the last value per name, so it cannot show a double fire: count the calls
    calls = Counter()

    def count(tensor, *, hook):
        calls[hook.name] += 1

    with model.hooks([(name, count) for name in GOLDEN_TWO_LAYERS]):
        model.logits(photos, texts)
    assert calls == Counter({name: 1 for name in GOLDEN_TWO_LAYERS})
    assert model.family == family


def test_hook_z_is_the_output_projection_input_per_head(tiny_hooked, family, photos, texts):
    """hook_z [batch, pos, head, d_head], flattened over heads and put through the block's output
    projection, gives back what the attention adds to the residual (hook_out)."""
    import torch

    model = tiny_hooked[family]
    out, cache = model.run_with_cache(images=photos, texts=texts, names_filter=lambda n: "attn.hook_" in n)
    for tower in ("vision", "text"):
        block = model.modules(tower).blocks[1]
        z = cache["z", 1, tower]
        assert z.shape[-2:] == (model.n_heads(tower), block.o.in_features // model.n_heads(tower))
        rebuilt = block.o(z.flatten(-2))
        torch.testing.assert_close(rebuilt, cache["attn_out", 1, tower], rtol=1e-5, atol=1e-6)
