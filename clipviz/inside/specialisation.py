"""Do heads specialise? Rank heads by TextSpan on two word sets, ablate the top ones, compare.

Gandelsman et al. (ICLR 2024) found heads of CLIP ViT-L that write mostly colour, shape, location
... into the image embedding, and showed it causally: mean-ablating a property's heads hurts that
property's zero-shot accuracy more than others. On the shapes world the ground truth makes this a
direct test: rank the vision heads by the share of their TextSpan variance explained by colour
words vs shape words, mean-ablate the top colour heads and measure colour accuracy and shape
accuracy on single-object scenes (the reverse for the shape heads). Small models may not
specialise; the numbers say so either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .decomposition import decompose
from .patching import ablated
from .textspan import describe_heads, word_share


@dataclass
class SpecialisationResult:
    """Head rankings and accuracies with and without the top heads of each kind ablated."""

    colour_heads: list[tuple[int, int, float]]  # (layer, head, colour share), best first
    shape_heads: list[tuple[int, int, float]]
    accuracy: dict[str, dict[str, float]]  # condition -> {"colour": acc, "shape": acc}

    def __repr__(self) -> str:
        lines = ["condition               colour acc  shape acc"]
        for condition, acc in self.accuracy.items():
            lines.append(f"{condition:<22}  {acc['colour']:10.1%}  {acc['shape']:9.1%}")
        lines.append("top colour heads: " + ", ".join(f"L{l}H{h} ({s:.0%})" for l, h, s in self.colour_heads))
        lines.append("top shape heads:  " + ", ".join(f"L{l}H{h} ({s:.0%})" for l, h, s in self.shape_heads))
        return "\n".join(lines)


def _accuracy(model, images, truth, colours, shapes_) -> dict[str, float]:
    """Zero-shot over every colour × shape label; colour (shape) accuracy = the predicted label's
    colour (shape) is right."""
    labels = [f"a {c} {s}" for c in colours for s in shapes_]
    pairs = [(c, s) for c in colours for s in shapes_]
    with torch.no_grad():
        scores = model.image_embeds(images) @ model.text_embeds(labels).t()
    predicted = [pairs[i] for i in scores.argmax(1).tolist()]
    n = len(truth)
    return {
        "colour": sum(p[0] == t[0] for p, t in zip(predicted, truth)) / n,
        "shape": sum(p[1] == t[1] for p, t in zip(predicted, truth)) / n,
    }


def colour_vs_shape(model, scenes, reference, *, top: int = 2, n_texts: int = 5, pool=None) -> SpecialisationResult:
    """Rank vision heads by TextSpan colour vs shape share over ``scenes``' images, then mean-ablate
    (over ``reference`` images) the ``top`` colour heads, and separately the ``top`` shape heads.

    ``scenes``: single-object :class:`clipviz.data.shapes.Scene` objects (ground truth).
    ``pool``: TextSpan text pool (default: colour words, shape words, sizes, backgrounds, places).
    """
    from ..data import shapes

    colours, shape_words = list(shapes.COLORS), list(shapes.SHAPES)
    pool = pool or [*colours, *shape_words, *shapes.SIZES, *shapes.BACKGROUNDS,
                    "on the left", "on the right", "at the top", "at the bottom", "in the centre"]
    images = [scene.image for scene in scenes]
    truth = [(scene.objects[0].color, scene.objects[0].shape) for scene in scenes]
    descriptions = describe_heads(model, images, pool, n=n_texts, decomposition=decompose(model, images=images))
    colour_rank = sorted(((l, h, word_share(r, colours)) for (l, h), r in descriptions.items()), key=lambda x: -x[2])
    shape_rank = sorted(((l, h, word_share(r, shape_words)) for (l, h), r in descriptions.items()), key=lambda x: -x[2])
    colour_heads, shape_heads = colour_rank[:top], shape_rank[:top]
    accuracy = {"none ablated": _accuracy(model, images, truth, colours, shape_words)}
    for name, chosen in (("colour heads ablated", colour_heads), ("shape heads ablated", shape_heads)):
        with ablated(model, [(l, h) for l, h, _ in chosen], reference=reference):
            accuracy[name] = _accuracy(model, images, truth, colours, shape_words)
    return SpecialisationResult(colour_heads, shape_heads, accuracy)
