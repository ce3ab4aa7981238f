"""Pinned logits of the bundled shapes-clip on fixed shapes-world scenes (transformers' integration-test style).

An accuracy floor lets numerical drift hide; a pinned logit on a fixed input does not. The numbers
below are the one place to update when the bundled model is retrained (or the shapes renderer
changes). Regenerate them with:

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python -c "import clipviz; from clipviz.data import shapes; \\
      m = clipviz.load('shapes-clip'); s = shapes.sample(2, seed=0, objects=2); \\
      print(m.logits([x.image for x in s], ['an orange diamond', 'a blue star', 'a green star', 'a red circle']))"
"""

import torch

import clipviz
from clipviz import zoo
from clipviz.data import shapes

#: scene 0: "a large orange diamond and a small orange square"; scene 1: "a small green star and a large blue star"
SCENES = dict(n=2, seed=0, objects=2)
TEXTS = ["an orange diamond", "a blue star", "a green star", "a red circle"]
EXPECTED_LOGITS = torch.tensor([
    [9.9481, 2.2023, 0.5164, -0.9891],
    [1.0104, 11.4194, 11.3943, 1.3681],
])


def test_shapes_clip_logits_are_pinned():
    assert "shapes-clip" in zoo.available(), "the bundled shapes-clip is missing from clipviz/zoo/models"
    model = clipviz.load("shapes-clip", device="cpu")
    scenes = shapes.sample(**SCENES)
    assert [o.describe("en", article=True) for o in scenes[0].objects][0] == TEXTS[0]  # the scenes are the pinned ones
    logits = model.logits([scene.image for scene in scenes], TEXTS)
    torch.testing.assert_close(logits.float(), EXPECTED_LOGITS, rtol=0, atol=1e-3)
