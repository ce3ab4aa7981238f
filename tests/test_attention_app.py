"""AttentionApp: controls, what re-runs the model (only image and prompt), errors shown in the app."""

from __future__ import annotations

import numpy as np
import pytest

from clipviz.heatmaps import heatmap
from clipviz.widgets.attention import AttentionApp, AttentionState

PROMPT = "a photo of a red circle"


@pytest.fixture
def counted(tiny_hooked, monkeypatch):
    """The tiny CLIP with its image tower's runs counted."""
    model = tiny_hooked["clip"]
    calls = {"image": 0}
    original = model.image_features

    def image_features(pixel_values):
        calls["image"] += 1
        return original(pixel_values)

    monkeypatch.setattr(model, "image_features", image_features)
    return model, calls


def test_controls_cover_the_issue(tiny_hooked, photos):
    model = tiny_hooked["clip"]
    app = AttentionApp(model, images=photos, prompt=PROMPT)
    assert isinstance(app.state, AttentionState)
    assert [v for _, v in app._image_picker.options] == [0, 1, 2]
    assert app._head.options[0] == ("mean", "mean") and len(app._head.options) == model.n_heads() + 1
    assert (app._layer.min, app._layer.max) == (0, model.n_layers() - 1)
    assert app._prompt.continuous_update is False
    assert app._view.value[:2] == b"\xff\xd8" and app._grid_view.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert app.last_error is None
    assert "<span" in app._tokens.value  # the prompt's words, highlighted


def test_view_controls_reuse_the_capture(counted, photos):
    model, calls = counted
    app = AttentionApp(model, images=photos, prompt=PROMPT)
    assert calls["image"] == 1
    before = app._view.value
    for method in ("attention", "rollout", "relevance", "grad_eclip"):
        app.state.method = method
    app.state.method = "attention"
    app.state.layer = 1
    app.state.head = 2
    app.state.opacity = 0.9
    app.state.exclude_sinks = True
    assert calls["image"] == 1, "slider moves must not run the model"
    assert app._view.value != before and app.last_error is None
    app.state.prompt = "a blue square"
    assert calls["image"] == 2
    app.state.image_index = 2
    assert calls["image"] == 3
    app.state.image_index = 0
    app.state.prompt = PROMPT
    assert calls["image"] == 3, "a pair seen before is served from the cache"


def test_app_maps_equal_heatmap(tiny_hooked, photos):
    model = tiny_hooked["altclip"]
    app = AttentionApp(model, images=photos, prompt=PROMPT)
    app.state.image_index = 1
    app.state.layer = 1
    # atol: sdpa vs eager in uncaptured layers, float noise
    np.testing.assert_allclose(app.heatmap.grid, heatmap(model, photos[1], PROMPT, start_layer=1).grid, atol=1e-5)
    app.state.method = "attention"
    app.state.head = 3
    expected = heatmap(model, photos[1], method="attention", layer=1, head=3).grid
    np.testing.assert_allclose(app.heatmap.grid, expected, atol=1e-5)  # sdpa vs eager in uncaptured layers: float noise


def test_errors_are_shown_in_the_app(tiny_hooked, photos):
    app = AttentionApp(tiny_hooked["clip"], images=photos, prompt="")
    assert "type a prompt" in app.last_error  # relevance without a prompt: a message, not an exception
    assert any("type a prompt" in o.get("text", "") for o in app._errors.outputs)
    app.state.method = "attention"
    assert app.last_error is None and app._errors.outputs == ()


def test_default_images_are_shapes_scenes(tiny_hooked):
    app = AttentionApp(tiny_hooked["chinese_clip"])
    assert len(app.images) == 6 and app.images[0].size == (64, 64)
    assert app.state.prompt.startswith("a ") and app.last_error is None
