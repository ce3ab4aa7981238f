"""Inside the model: decomposition (exact), direct logit attribution, TextSpan, patching."""

import copy

import numpy as np
import pytest
import torch

import clipviz
from clipviz.inside import ablated, decompose, logit_attribution, patch
from clipviz.inside.textspan import text_span
from clipviz.model import HookedCLIP


@pytest.mark.parametrize("tower", ["vision", "text"])
def test_decomposition_is_exact(tiny_hooked, family, photos, texts, tower):
    """embed + MLPs + heads + remainder == the model's own pre-normalisation embedding (1e-4 relative),
    for both towers of every family — incl. the post-LN BERT/XLM-R text towers."""
    model = tiny_hooked[family]
    inputs = {"images": photos} if tower == "vision" else {"texts": texts}
    d = decompose(model, **inputs, positions=[-1, 0])
    if tower == "vision":
        own = model.model.get_image_features(pixel_values=model.pixel_values(photos)).pooler_output
        unit = model.image_embeds(photos)
    else:
        own = model.model.get_text_features(**model.tokenize(texts)).pooler_output
        unit = model.text_embeds(texts)
    torch.testing.assert_close(d.total, own.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(d.total / d.total.norm(dim=-1, keepdim=True), unit, rtol=1e-5, atol=1e-6)
    assert d.relative_error() < 1e-4
    n_layers, n_heads = model.n_layers(tower), model.n_heads(tower)
    assert d.heads.shape == (len(inputs[next(iter(inputs))]), n_layers, n_heads, own.shape[-1])
    for layer in (n_layers - 1, 0):  # per-position parts sum to the head's part
        torch.testing.assert_close(d.positions[layer].sum(2), d.heads[:, layer], rtol=1e-4, atol=1e-5)
    assert d.heads.abs().sum() > 0 and d.mlps.abs().sum() > 0


def test_remainder_is_only_biases(tiny_models, photos, texts):
    """With every bias and LayerNorm shift set to zero, nothing is left for the remainder."""
    for family in ("clip", "altclip"):
        hf = copy.deepcopy(clipviz.load(tiny_models[family]).model)
        with torch.no_grad():
            for module in hf.modules():
                if isinstance(module, (torch.nn.Linear, torch.nn.LayerNorm)) and module.bias is not None:
                    module.bias.zero_()
        model = HookedCLIP(hf, clipviz.load(tiny_models[family]).processor)
        for d in (decompose(model, images=photos), decompose(model, texts=texts)):
            assert d.remainder.norm() < 1e-5 * d.total.norm()
            assert d.relative_error() < 1e-4


def test_decompose_both_towers_and_budget(tiny_hooked, photos, texts):
    model = tiny_hooked["chinese_clip"]
    both = decompose(model, images=photos, texts=texts)
    assert set(both) == {"vision", "text"}
    with pytest.raises(MemoryError, match="budget"):
        decompose(model, images=photos, max_bytes=1000)
    with pytest.raises(ValueError, match="images="):
        decompose(model)


def test_logit_attribution_sums_to_the_logit(tiny_hooked, family, photos):
    photo = photos[0]
    model = tiny_hooked[family]
    attribution = logit_attribution(model, photo, "a red circle")
    logit = float(model.logits([photo], ["a red circle"])[0, 0])
    assert attribution.logit == pytest.approx(logit, rel=1e-4, abs=1e-5)
    assert attribution.total() == pytest.approx(logit, rel=1e-4, abs=1e-5)
    last = model.n_layers("vision") - 1
    maps = attribution.patch_maps[last]
    assert maps.shape == (model.n_heads("vision"), *model.grid_size)
    np.testing.assert_allclose(maps.sum((1, 2)) + attribution.cls_share[last], attribution.heads[last], rtol=1e-4, atol=1e-5)
    assert len(attribution.top_heads(3)) == 3


def test_text_span_picks_the_planted_direction():
    """Outputs that vary along text 2 and (less) text 0: TextSpan picks 2 then 0, shares add up."""
    rng = torch.Generator().manual_seed(0)
    pool = torch.nn.functional.normalize(torch.randn(6, 16, generator=rng, dtype=torch.float64), dim=-1)
    weights = torch.randn(200, 2, generator=rng, dtype=torch.float64) * torch.tensor([3.0, 1.0])
    outputs = weights[:, :1] * pool[2] + weights[:, 1:] * pool[0]
    result = text_span(outputs, pool, [f"t{i}" for i in range(6)], n=3)
    assert result.texts[:2] == ["t2", "t0"]
    assert result.explained == pytest.approx(1.0, abs=1e-9)
    assert result.variance_share[0] > result.variance_share[1]
    assert result.variance_share[2] == pytest.approx(0.0, abs=1e-9)


def test_patching_with_its_own_activation_changes_nothing(tiny_hooked, family, photos):
    model = tiny_hooked[family]
    labels = ["a red circle", "a blue square"]

    def metric(out):
        return out.logits_per_image[:, 0].mean()

    hooks = ["vision.blocks.-1.attn.hook_z", "vision.blocks.0.hook_resid_post", "vision.blocks.1.attn.hook_pattern"]
    result = patch(model, clean=photos, corrupted=photos, hooks=hooks, metric=metric, texts=labels, heads=True)
    assert set(result.effects) == {"vision.blocks.1.attn.hook_z", "vision.blocks.0.hook_resid_post",
                                   "vision.blocks.1.attn.hook_pattern"}
    assert result.effects["vision.blocks.1.attn.hook_z"].shape == (model.n_heads(),)
    for values in result.effects.values():
        assert (values - result.clean).abs().max() <= 1e-6
    by_position = patch(model, clean=texts_same(), corrupted=texts_same(), hooks="text.blocks.0.hook_mlp_out",
                        metric=lambda out: out.logits_per_image.sum(), images=photos, positions=True)
    assert (by_position.effects["text.blocks.0.hook_mlp_out"] - by_position.clean).abs().max() <= 1e-5


def texts_same():
    return ["a red circle", "a blue circle"]


def test_patching_moves_the_metric_between_the_runs(tiny_hooked, photos):
    model = tiny_hooked["clip"]
    clean, corrupted = photos[:1], photos[1:2]

    def metric(out):
        return out.image_embeds[0, 0]

    last = f"vision.blocks.{model.n_layers() - 1}.hook_resid_post"
    result = patch(model, clean=clean, corrupted=corrupted, hooks=[last], metric=metric)
    assert result.clean != pytest.approx(result.corrupted)
    assert float(result.effects[last]) == pytest.approx(result.clean, abs=1e-6)  # last resid decides everything
    assert float(result.recovered(last)) == pytest.approx(1.0, abs=1e-4)
    mean = patch(model, clean=clean, corrupted=photos, hooks=[last], metric=metric, mode="mean")
    mean_embed = model.project("vision", model.run_with_cache(images=photos, names_filter=last)[1][last].mean(0, keepdim=True))
    assert float(mean.effects[last]) == pytest.approx(float(mean_embed[0, 0]), abs=1e-5)


def test_patching_errors(tiny_hooked, photos):
    model = tiny_hooked["clip"]
    with pytest.raises(ValueError, match="same number of tokens"):
        patch(model, clean=["a red circle"], corrupted=["a very big red circle on the left"],
              hooks="text.blocks.0.hook_resid_post", metric=lambda o: 0.0)
    with pytest.raises(ValueError, match="not in the vision tower"):
        patch(model, clean=photos, corrupted=photos, hooks="text.blocks.0.hook_resid_post", metric=lambda o: 0.0)


def test_ablated_heads_change_the_embedding_and_leave_no_hooks(tiny_hooked, photos):
    from clipviz.hooks import clipviz_hooks_on

    model = tiny_hooked["clip"]
    before = model.image_embeds(photos)
    with ablated(model, [(-1, 0), (-1, 1)], reference=photos):
        during = model.image_embeds(photos)
    with ablated(model, [(0, 0)], how="zero"):
        zeroed = model.image_embeds(photos)
    assert not torch.allclose(before, during) and not torch.allclose(before, zeroed)
    torch.testing.assert_close(model.image_embeds(photos), before)
    assert clipviz_hooks_on(model.model) == 0
    with pytest.raises(ValueError, match="reference="), ablated(model, [(0, 0)]):
        pass


def test_plots_take_computed_objects(tiny_hooked, photos):
    import matplotlib

    matplotlib.use("Agg")
    from clipviz.plotting.inside import (
        plot_head_patches,
        plot_logit_attribution,
        plot_logit_lens,
    )

    model = tiny_hooked["clip"]
    attribution = logit_attribution(model, photos[0], "a red circle")
    ax = attribution.plot(selected=(1, 2))
    assert len(ax.texts) == attribution.heads.size + attribution.mlps.size
    ax = plot_head_patches(attribution, -1, 1, image=photos[0])
    assert ax.images[-1].get_array().shape == model.grid_size
    with pytest.raises(KeyError, match="positions="):
        plot_head_patches(attribution, 0, 0)
    assert plot_logit_attribution(attribution, mlps=False, annotate=False).images
    _, cache = model.run_with_cache(images=photos[:1])
    lens, labels = cache.accumulated_resid("vision", return_labels=True)
    sims = (lens[:, 0] @ model.text_embeds(["red", "blue"]).T).numpy()
    assert len(plot_logit_lens(sims, labels, ["red", "blue"]).lines) == 2


def test_colour_vs_shape_study_computes_what_it_reports(tiny_hooked):
    """The computation behind the BENCHMARKS finding: rankings sorted by TextSpan word share, and
    accuracies that match an independent recount with the heads mean-ablated."""
    from clipviz.data import shapes
    from clipviz.inside.specialisation import _accuracy, colour_vs_shape

    model = tiny_hooked["clip"]
    scenes = shapes.sample(6, seed=3)
    reference = [s.image for s in shapes.sample(4, seed=4)]
    result = colour_vs_shape(model, scenes, reference, top=2, n_texts=3)
    shares = [s for _, _, s in result.colour_heads]
    assert shares == sorted(shares, reverse=True) and len(result.colour_heads) == 2
    assert set(result.accuracy) == {"none ablated", "colour heads ablated", "shape heads ablated"}
    images = [s.image for s in scenes]
    truth = [(s.objects[0].color, s.objects[0].shape) for s in scenes]
    with ablated(model, [(l, h) for l, h, _ in result.colour_heads], reference=reference):
        recount = _accuracy(model, images, truth, list(shapes.COLORS), list(shapes.SHAPES))
    assert recount == result.accuracy["colour heads ablated"]
    assert "colour acc" in repr(result)
