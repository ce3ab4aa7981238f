"""Single towers and the image classifier at the published architectures (random weights), saved and
loaded back: what a user's Hub checkpoint of these classes goes through."""

import numpy as np
import pytest
import torch
from PIL import Image
from test_published_architectures import PUBLISHED, _build

import clipviz
from clipviz.towers import cut

pytestmark = pytest.mark.slow


def _photos():
    return [Image.fromarray(np.random.default_rng(i).integers(0, 255, (300, 400 - 100 * i, 3), dtype=np.uint8)) for i in range(2)]


@pytest.mark.parametrize("family", list(PUBLISHED))
def test_published_single_towers_equal_their_dual(family, tmp_path):
    from transformers import AutoProcessor

    _build(family, tmp_path / "dual")
    dual = clipviz.load(tmp_path / "dual", device="cpu")
    processor = AutoProcessor.from_pretrained(tmp_path / "dual", backend="pil")
    photos, texts = _photos(), ["a red circle", "a blue square on the left"]
    _, expected = dual.run_with_cache(images=photos, texts=texts,
                                      names_filter=lambda n: n.endswith(("hook_pooled", "hook_embeds")))
    for tower, part in (("vision", processor.image_processor), ("text", processor.tokenizer)):
        single = cut(dual.model, tower)
        single.save_pretrained(tmp_path / tower)
        part.save_pretrained(tmp_path / tower)
        del single
        model = clipviz.load(tmp_path / tower, device="cpu")
        assert model.towers == (tower,) and model.hook_names() == dual.hook_names(tower)
        inputs = {"images": photos} if tower == "vision" else {"texts": texts}
        # the same names as the dual's run: capturing patterns switches attention to the eager math,
        # which differs from sdpa by ~1e-6 at this size
        out, cache = model.run_with_cache(**inputs, names_filter=lambda n: n.endswith(("hook_pooled", "hook_embeds")))
        torch.testing.assert_close(cache[f"{tower}.hook_pooled"], expected[f"{tower}.hook_pooled"], atol=1e-6, rtol=0)
        if family == "clip":  # projected towers: the joint embedding itself
            embeds = out.image_embeds if tower == "vision" else out.text_embeds
            torch.testing.assert_close(embeds, expected[f"{tower}.hook_embeds"], atol=1e-6, rtol=0)
        del model


def test_published_image_classifier(tmp_path):
    """CLIPForImageClassification at ViT-B/32 size with ImageNet's 1,000 classes."""
    from tiny_models import CORPUS
    from transformers import CLIPConfig, CLIPForImageClassification

    from clipviz.zoo.tokenizers import build_processor, build_tokenizer

    vision = PUBLISHED["clip"][0]
    labels = {i: f"class {i}" for i in range(1000)}
    torch.manual_seed(0)
    config = CLIPConfig(vision_config=vision, id2label=labels, label2id={v: k for k, v in labels.items()})
    CLIPForImageClassification(config).save_pretrained(tmp_path)
    build_processor("clip", build_tokenizer("clip", CORPUS * 4, vocab_size=300), 224).image_processor.save_pretrained(tmp_path)
    model = clipviz.load(tmp_path, device="cpu")
    assert model.is_classifier and len(model.labels) == 1000 and model.grid_size == (7, 7)
    photos = _photos()
    reference = CLIPForImageClassification.from_pretrained(tmp_path, attn_implementation="eager")
    pixels = model.pixel_values(photos)
    with torch.no_grad():
        eager = reference(pixel_values=pixels, output_attentions=True)
    result = model.classify(photos)
    torch.testing.assert_close(torch.from_numpy(result.logits), eager.logits, atol=1e-4, rtol=1e-5)
    _, cache = model.run_with_cache(pixel_values=pixels)
    for layer, attention in enumerate(eager.attentions):
        torch.testing.assert_close(cache[f"vision.blocks.{layer}.attn.hook_pattern"], attention, atol=1e-5, rtol=0)
    hm = clipviz.heatmap(model, photos[0], target="class 7", resolution=448)
    assert hm.grid.shape == (14, 19) and not np.isnan(hm.image_map).any()
