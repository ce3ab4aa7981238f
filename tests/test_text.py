"""Text input: strings or lists, empty lists refused, over-long texts truncated with a warning."""

import pytest
import torch


def test_string_or_list(tiny_hooked, family):
    model = tiny_hooked[family]
    torch.testing.assert_close(model.text_embeds("a red circle"), model.text_embeds(["a red circle"]))


def test_empty_text_list_is_refused(tiny_hooked, family, photos):
    model = tiny_hooked[family]
    with pytest.raises(ValueError, match="no texts"):
        model.text_embeds([])
    with pytest.raises(ValueError, match="no texts"):
        model.logits(photos, [])
    with pytest.raises(ValueError, match="no images"):
        model.logits([], ["a"])
    with pytest.raises(TypeError, match="strings"):
        model.text_embeds(["ok", 3])


def test_too_long_text_is_truncated_with_a_warning(tiny_hooked, family):
    model = tiny_hooked[family]
    long_text = " ".join(["red circle blue square"] * 40)
    with pytest.warns(UserWarning, match=f"context of {model.context_length} tokens"):
        tokens = model.tokenize([long_text, "red"])
    assert tokens["input_ids"].shape[1] == model.context_length
    with pytest.warns(UserWarning):
        embeds = model.text_embeds([long_text])
    assert torch.isfinite(embeds).all()


def test_context_length_fits_the_position_table(tiny_hooked, family):
    model = tiny_hooked[family]
    with pytest.warns(UserWarning):
        tokens = model.tokenize(["word " * 500])
    # a forward at the full context must work (XLM-R offsets its positions by the padding index)
    model.text_features(tokens)
