"""Every model class of the three families: single towers, pairing, CLIP image classifiers.

Checkpoints are cut from the tiny dual models of ``tiny_models.py`` (or built from their configs),
written with ``save_pretrained`` and read back through ``clipviz.load``, as a user's would be.
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import single_tower_checkpoints

import clipviz
from clipviz.towers import SUPPORTED_CLASSES, MissingTowerError, cut

SINGLE = {
    "clip": ["CLIPVisionModelWithProjection", "CLIPTextModelWithProjection", "CLIPVisionModel", "CLIPTextModel"],
    "chinese_clip": ["ChineseCLIPVisionModel", "ChineseCLIPTextModel"],
    "altclip": ["AltCLIPVisionModel", "AltCLIPTextModel"],
}


@pytest.fixture(scope="module")
def towers_dir(tiny_models, tmp_path_factory):
    """{class name: save_pretrained directory} for every single-tower class and the classifier."""
    return single_tower_checkpoints(tiny_models, tmp_path_factory.mktemp("towers"))


def test_every_listed_class_is_covered(towers_dir):
    listed = {name for names in SINGLE.values() for name in names} | {"CLIPForImageClassification"}
    assert listed <= set(towers_dir)
    assert listed | {"CLIPModel", "ChineseCLIPModel", "AltCLIPModel"} == set(SUPPORTED_CLASSES)


@pytest.mark.parametrize("family", list(SINGLE))
def test_single_towers_load_with_their_class_and_hook_names(family, towers_dir, tiny_hooked):
    dual = tiny_hooked[family]
    for name in SINGLE[family]:
        model = clipviz.load(towers_dir[name], device="cpu")
        tower = "vision" if "Vision" in name else "text"
        assert type(model.model).__name__ == name
        assert model.towers == (tower,)
        assert model.hook_names() == dual.hook_names(tower)  # the same vocabulary as the dual model
        assert name in repr(model)
        projected = name.endswith("WithProjection")
        assert ("projected, as the dual model" if projected else "pooled states (no projection)") in repr(model)


@pytest.mark.parametrize("family", list(SINGLE))
def test_single_tower_embeddings_equal_the_dual_model(family, towers_dir, tiny_hooked, photos, texts):
    dual = tiny_hooked[family]
    _, dual_cache = dual.run_with_cache(images=photos, texts=texts, names_filter=lambda n: "hook_pooled" in n or "hook_embeds" in n)
    for name in SINGLE[family]:
        model = clipviz.load(towers_dir[name], device="cpu")
        tower = model.towers[0]
        inputs = {"images": photos} if tower == "vision" else {"texts": texts}
        out, cache = model.run_with_cache(**inputs, names_filter=lambda n: "hook_pooled" in n or "hook_embeds" in n)
        pooled = cache[f"{tower}.hook_pooled"]
        torch.testing.assert_close(pooled, dual_cache[f"{tower}.hook_pooled"], atol=1e-6, rtol=0)
        embeds = out.image_embeds if tower == "vision" else out.text_embeds
        if name.endswith("WithProjection"):  # the very joint embedding of the dual model
            expected = dual.image_embeds(photos) if tower == "vision" else dual.text_embeds(texts)
        else:  # the unit-norm pooled state
            expected = pooled / pooled.norm(dim=-1, keepdim=True)
        torch.testing.assert_close(embeds, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", list(SINGLE))
def test_single_tower_hooks_match_eager_attentions(family, towers_dir, photos, texts):
    for name in SINGLE[family]:
        model = clipviz.load(towers_dir[name], device="cpu")
        tower = model.towers[0]
        if tower == "vision":
            pixels = model.pixel_values(photos)
            _, cache = model.run_with_cache(pixel_values=pixels)
            inputs = {"pixel_values": pixels}
        else:
            inputs = model.tokenize(texts)
            _, cache = model.run_with_cache(texts=texts)
        reference = type(model.model).from_pretrained(towers_dir[name], attn_implementation="eager",
                                                      **({"add_pooling_layer": False} if name == "ChineseCLIPTextModel" else {}))
        with torch.no_grad():
            eager = reference(**inputs, output_attentions=True).attentions
        assert len(eager) == model.n_layers(tower)
        for layer, attention in enumerate(eager):
            captured = cache[f"{tower}.blocks.{layer}.attn.hook_pattern"]
            if tower == "text":  # compare real tokens only (padded rows differ by masking convention)
                mask = inputs["attention_mask"].bool()
                for i in range(mask.shape[0]):
                    n = int(mask[i].sum())
                    torch.testing.assert_close(captured[i, :, :n, :n], attention[i, :, :n, :n], atol=1e-5, rtol=0)
            else:
                torch.testing.assert_close(captured, attention, atol=1e-5, rtol=0)


def test_missing_tower_errors_name_the_tower(towers_dir, photos):
    vision = clipviz.load(towers_dir["CLIPVisionModelWithProjection"], device="cpu")
    with pytest.raises(MissingTowerError, match="text tower"):
        vision.text_embeds(["a cat"])
    with pytest.raises(MissingTowerError, match="text tower"):
        vision.logits(photos, ["a cat"])
    with pytest.raises(MissingTowerError, match="text tower"):
        clipviz.heatmap(vision, photos[0], "a red circle")
    text = clipviz.load(towers_dir["AltCLIPTextModel"], device="cpu")
    with pytest.raises(MissingTowerError, match="vision tower"):
        text.image_embeds(photos)
    with pytest.raises(MissingTowerError, match="vision tower"):
        text.run_with_cache(images=photos)
    # methods that need no text still work on a vision tower
    assert clipviz.heatmap(vision, photos[0], method="rollout").grid.shape == vision.grid_size


def test_cut_towers_in_memory_and_from_a_dual_checkpoint(tiny_models, tiny_hooked, photos, texts):
    dual = tiny_hooked["clip"]
    vision = clipviz.load(tiny_models["clip"], tower="vision", device="cpu")
    assert type(vision.model).__name__ == "CLIPVisionModelWithProjection"
    assert vision.model.config.projection_dim == dual.model.config.projection_dim  # not the sub-config's 512
    torch.testing.assert_close(vision.image_embeds(photos), dual.image_embeds(photos), atol=1e-6, rtol=0)
    text = clipviz.load(cut(dual.model, "text"), processor=dual.processor.tokenizer, device="cpu")
    torch.testing.assert_close(text.text_embeds(texts), dual.text_embeds(texts), atol=1e-6, rtol=0)
    with pytest.raises(TypeError, match="processor"):
        clipviz.load(cut(dual.model, "text"))


def test_pairing_two_towers_gives_the_dual_model_back(towers_dir, tiny_hooked, photos, texts):
    dual = tiny_hooked["clip"]
    paired = clipviz.load(vision=towers_dir["CLIPVisionModelWithProjection"], text=towers_dir["CLIPTextModelWithProjection"],
                          logit_scale=dual.logit_scale, device="cpu")
    assert type(paired.model).__name__ == "CLIPModel" and paired.towers == ("vision", "text")
    assert paired.hook_names() == dual.hook_names()
    torch.testing.assert_close(paired.logits(photos, texts), dual.logits(photos, texts), atol=1e-5, rtol=0)
    with torch.no_grad():  # and transformers' own forward of the rebuilt model agrees
        inputs = dict(pixel_values=dual.pixel_values(photos), **dual.tokenize(texts))
        expected = dual.model(**inputs).logits_per_image
        torch.testing.assert_close(paired.model(**inputs).logits_per_image, expected, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="no projection"):
        clipviz.load(vision=towers_dir["CLIPVisionModel"], text=towers_dir["CLIPTextModelWithProjection"])
    with pytest.raises(ValueError, match="vision tower and a text tower"):
        clipviz.load(vision=towers_dir["CLIPTextModelWithProjection"], text=towers_dir["CLIPTextModelWithProjection"])


# ------------------------------------------------------------------------------ image classifiers
@pytest.fixture(scope="module")
def classifier(towers_dir):
    return clipviz.load(towers_dir["CLIPForImageClassification"], device="cpu")


def test_classifier_classifies_with_its_head(classifier, towers_dir, photos):
    assert classifier.is_classifier and classifier.labels == ["tabby cat", "golden retriever", "red circle"]
    assert "3 classes" in repr(classifier)
    result = classifier.classify(photos)
    with torch.no_grad():
        reference = classifier.model(pixel_values=classifier.pixel_values(photos)).logits
    torch.testing.assert_close(torch.from_numpy(result.logits), reference, atol=1e-5, rtol=0)
    assert result.labels == classifier.labels and result.probs.sum(axis=1) == pytest.approx([1, 1, 1])
    subset = classifier.classify(photos, labels=["red circle", 0])
    assert subset.labels == ["red circle", "tabby cat"]
    with pytest.raises(ValueError, match="not one of the classifier's labels.*'tabby cat'"):
        classifier.classify(photos, labels=["tabby kat"])
    with pytest.raises(MissingTowerError, match="text tower"):
        classifier.text_embeds("a cat")


@pytest.mark.parametrize("method", ["relevance", "grad_eclip"])
def test_classifier_heatmap_explains_a_class_logit(classifier, photos, method):
    image = photos[0]
    by_name = clipviz.heatmap(classifier, image, target="golden retriever", method=method)
    by_index = clipviz.heatmap(classifier, image, target=1, method=method)
    assert by_name.grid == pytest.approx(by_index.grid)
    with torch.no_grad():
        logits = classifier.model(pixel_values=classifier.pixel_values([image])).logits[0]
    assert by_name.logit == pytest.approx(float(logits[1]), abs=1e-5)
    assert by_name.text == "golden retriever"
    other = clipviz.heatmap(classifier, image, target="red circle", method=method)
    assert other.grid != pytest.approx(by_name.grid)  # a different logit, a different map
    default = clipviz.heatmap(classifier, image, method=method)  # the predicted class
    assert default.text == classifier.labels[int(logits.argmax())]
    with pytest.raises(ValueError, match="image classifier.*target="):
        clipviz.heatmap(classifier, image, "a tabby cat", method=method)


def test_classifier_relevance_reads_the_mean_of_the_patch_rows(classifier, photos):
    """Chefer relevance recomputed from transformers' eager attentions and autograd, with the
    classifier's readout (mean over patch tokens) instead of the CLS row."""
    import numpy as np

    image = photos[1]
    hm = clipviz.heatmap(classifier, image, target=2)
    reference = type(classifier.model).from_pretrained(classifier.model.name_or_path, attn_implementation="eager")
    pixels = classifier.pixel_values([image])
    outputs = reference(pixel_values=pixels, output_attentions=True)
    attentions = outputs.attentions
    for a in attentions:
        a.retain_grad()
    outputs.logits[0, 2].backward()
    n = attentions[0].shape[-1]
    relevance = torch.eye(n, dtype=torch.float64)
    for a in attentions:
        cam = (a.grad[0].double() * a[0].detach().double()).clamp(min=0).mean(0)
        relevance = relevance + cam @ relevance
    readout = torch.zeros(n, dtype=torch.float64)
    readout[1:] = 1.0 / (n - 1)
    expected = (readout @ relevance)[1:].numpy().reshape(classifier.grid_size)
    np.testing.assert_allclose(hm.raw, expected, atol=1e-6)


def test_attention_app_offers_the_classes(classifier, photos):
    from clipviz.widgets import AttentionApp

    app = AttentionApp(classifier, photos[:2])
    assert [value for _, value in app._prompt.options] == [""] + classifier.labels  # a menu, not a text box
    assert app.last_error is None and app.heatmap.text in classifier.labels  # the predicted class
    app.state.prompt = "red circle"
    assert app.last_error is None and app.heatmap.text == "red circle"
    app.state.method = "grad_eclip"
    assert app.last_error is None and app.heatmap.method == "grad_eclip"


def test_single_tower_weights_version_covers_the_whole_tower(towers_dir):
    model = clipviz.load(towers_dir["CLIPVisionModel"], device="cpu")  # the tower is the model itself
    before = model.weights_version("vision")
    with torch.no_grad():
        model.model.encoder.layers[-1].mlp.fc2.weight[0, 0] += 1.0
    assert model.weights_version("vision") != before


@pytest.mark.parametrize("family", list(SINGLE))
def test_embed_collects_a_single_towers_vectors(family, towers_dir, tiny_hooked, photos, texts):
    """``clipviz.embed`` on a single tower: its own vectors, at its own width (no joint-space config)."""
    import numpy as np

    for name in SINGLE[family]:
        model = clipviz.load(towers_dir[name], device="cpu")
        if model.towers == ("vision",):
            emb = clipviz.embed(model, images=photos, progress=False)
            expected = model.image_embeds(photos)
        else:
            emb = clipviz.embed(model, texts=texts, progress=False)
            expected = model.text_embeds(texts)
        assert emb.dim == expected.shape[1]
        np.testing.assert_allclose(np.asarray(emb.vectors), expected.numpy(), atol=1e-5)
