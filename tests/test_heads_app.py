"""HeadsApp without a browser: the grid shows the attribution, a head click shows TextSpan and the
patch map, the ablate toggle shows the zero-shot result with the head mean-ablated."""

import numpy as np
import pytest

from clipviz.hooks import clipviz_hooks_on
from clipviz.widgets.heads import HeadsApp


def test_heads_app_grid_click_and_ablate(tiny_hooked, photos):
    model = tiny_hooked["clip"]
    app = HeadsApp(model, images=photos, prompt="a red circle", labels=["a red circle", "a blue square"],
                   texts=["red", "blue", "circle", "square", "star"], span_images=photos)
    assert app.last_error is None
    attribution = app.attribution
    shown = np.array([[float(b.description) for b in row] for row in app._buttons])
    np.testing.assert_allclose(shown, attribution.heads, atol=0.006)
    picture_before = app._picture.value
    app.select_head(-1, 1)
    assert (app.state.layer, app.state.head) == (model.n_layers() - 1, 1)
    assert "L1H1" in app._detail.value and "%" in app._detail.value
    assert app._picture.value and app._picture.value != picture_before
    assert app._zeroshot.value == ""
    app._ablate.value = True
    assert "mean-ablated" in app._zeroshot.value and app.last_error is None
    assert clipviz_hooks_on(model.model) == 0
    app._prompt.value = "a blue square"
    assert app.attribution.text == "a blue square"
    app.state.prompt = "a green star"  # set from outside (the Dashboard): the text field follows
    assert app._prompt.value == "a green star" and app.attribution.text == "a green star"
    with pytest.raises(IndexError, match="no head"):
        app.select_head(0, 99)
