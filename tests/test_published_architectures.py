"""Each family at its published checkpoint's architecture (random weights): save, load, encode, capture.

So the Hub checkpoints work the day a user has network. Sizes are those of the config.json of
openai/clip-vit-base-patch32, OFA-Sys/chinese-clip-vit-base-patch16 and BAAI/AltCLIP; only the
vocabulary is the small locally built tokenizer's (the embedding table's size changes nothing else).
"""

import numpy as np
import pytest
import torch
from PIL import Image

import clipviz
from clipviz.hooks import clipviz_hooks_on
from clipviz.testing import TEXT_B, VIT_B16, VIT_B32, VIT_L14_336

pytestmark = pytest.mark.slow

PUBLISHED = {
    # family: (vision config, text config, projection_dim, expected grid, text context, processor size rule)
    "clip": (VIT_B32, dict(TEXT_B, max_position_embeddings=77), 512, (7, 7), 77),
    "chinese_clip": (
        VIT_B16,
        dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
             max_position_embeddings=512),
        512, (14, 14), 512,
    ),
    "altclip": (
        dict(VIT_L14_336, image_size=224),
        dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
             max_position_embeddings=514, project_dim=768),
        768, (16, 16), 512,
    ),
}


def _build(family, directory):
    from clipviz.testing import random_checkpoint

    vision, text, projection, _, context = PUBLISHED[family]
    random_checkpoint(directory, family, vision=vision, text=text, projection_dim=projection, context=context,
                      logit_scale=None)


@pytest.mark.parametrize("family", list(PUBLISHED))
def test_published_architecture(family, tmp_path):
    _build(family, tmp_path)
    model = clipviz.load(tmp_path, device="cpu")
    _, _, projection, grid, context = PUBLISHED[family]
    assert model.family == family and model.grid_size == grid and model.context_length == context
    photos = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (300, 400 - 100 * i, 3), dtype=np.uint8))
              for i in range(2)]
    texts = ["a red circle", "blue square " * 300]  # the second one runs to the full context
    with pytest.warns(UserWarning, match="truncated"):
        logits = model.logits(photos, texts)
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()
    with pytest.warns(UserWarning, match="truncated"):
        out, cache = model.run_with_cache(images=photos, texts=texts, attention_rows="cls", cache_dtype=torch.float16)
    layers = model.n_layers("vision")
    seq = grid[0] * grid[1] + 1
    assert cache["pattern", layers - 1].shape == (2, model.n_heads("vision"), seq)
    assert cache["pattern", 0, "text"].shape[-1] == context
    assert out.image_embeds.shape == (2, projection)
    torch.testing.assert_close(out.logits_per_image, logits, atol=1e-3, rtol=1e-4)
    assert clipviz_hooks_on(model.model) == 0
