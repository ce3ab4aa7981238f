"""TextSpan: describe what an attention head writes, with a few texts.

Gandelsman, Efros & Steinhardt ("Interpreting CLIP's image representation via text-based
decomposition", ICLR 2024) take one head's direct contributions to the image embedding over a set
of images (``[N, D]``, from :func:`~clipviz.inside.decomposition.decompose`), centre them, and search a
pool of text embeddings greedily: at each step pick the text whose direction explains the most of
the outputs' remaining variance, then remove that direction from the outputs *and* from every text
in the pool (so the next pick explains something new). The picked texts are the head's description;
each one's share of the variance says how much of the head it accounts for. A head whose top texts
are all colours "does colour".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .decomposition import Decomposition, _resolve, decompose


@dataclass
class TextSpanResult:
    """A head's greedy text basis: ``texts[i]`` explains ``variance_share[i]`` of its output variance."""

    layer: int
    head: int
    texts: list[str]
    variance_share: np.ndarray  # [n], fractions of the head's total variance over the image set
    total_variance: float

    @property
    def explained(self) -> float:
        """Share of the head's variance the chosen texts explain together."""
        return float(self.variance_share.sum())

    def __repr__(self) -> str:
        lines = [f"L{self.layer}H{self.head} (total variance {self.total_variance:.3g})"]
        lines += [f"  {share:6.1%}  {text}" for text, share in zip(self.texts, self.variance_share)]
        return "\n".join(lines)


def text_span(outputs: torch.Tensor, text_vectors: torch.Tensor, texts, n: int = 5, *, layer: int = -1,
              head: int = -1) -> TextSpanResult:
    """The greedy orthogonal text basis of ``outputs`` ``[N, D]`` from ``text_vectors`` ``[M, D]``.

    ``n`` texts are picked (at most ``M``). Shares are of the centred outputs' total variance and sum
    to at most 1.
    """
    texts = list(texts)
    if text_vectors.shape[0] != len(texts):
        raise ValueError(f"{len(texts)} texts but {text_vectors.shape[0]} text vectors")
    c = outputs.double()
    c = c - c.mean(0, keepdim=True)
    pool = text_vectors.double().clone()
    total = float((c**2).sum())
    chosen, shares = [], []
    available = torch.ones(len(texts), dtype=torch.bool)
    for _ in range(min(n, len(texts))):
        norms = pool.norm(dim=-1)
        directions = pool / norms.clamp_min(1e-12)[:, None]
        explained = ((c @ directions.t()) ** 2).sum(0)  # [M] variance along each remaining direction
        explained[~available | (norms < 1e-9)] = -1
        best = int(explained.argmax())
        if explained[best] < 0:
            break
        u = directions[best]
        chosen.append(texts[best])
        shares.append(float(explained[best]) / total if total > 0 else 0.0)
        available[best] = False
        c = c - (c @ u)[:, None] * u  # remove the direction from the outputs...
        pool = pool - (pool @ u)[:, None] * u  # ...and from the pool
    return TextSpanResult(layer, head, chosen, np.array(shares), total)


def default_pool(model) -> list[str] | None:
    """The shapes-world vocabulary for the bundled shapes models (``None`` for others)."""
    if getattr(model.model.config, "clipviz_template_set", None) != "shapes" and not str(model.name).startswith("shapes"):
        return None
    from ..data import shapes

    return [
        *shapes.COLORS,
        *shapes.SHAPES,
        *shapes.SIZES,
        *(f"on a {b} background" for b in shapes.BACKGROUNDS),
        *(f"a {c} {s}" for c, s in shapes.CLASSES),
        "on the left", "on the right", "at the top", "at the bottom", "in the centre",
        "two objects", "one object",
    ]


def describe_heads(model, images, texts=None, *, heads=None, n: int = 5,
                   decomposition: Decomposition | None = None) -> dict[tuple[int, int], TextSpanResult]:
    """TextSpan descriptions of vision heads over ``images``, from the text pool ``texts``.

    ``texts``: the pool (default: the shapes-world vocabulary for the bundled models);
    ``heads``: ``[(layer, head), ...]`` (default: every head; negative layers count from the end).
    Pass a ready ``decomposition`` of the same images to skip the model run.
    """
    texts = list(texts) if texts is not None else default_pool(model)
    if not texts:
        raise ValueError("give a text pool: texts=['red', 'circle', ...] (only the shapes models have a default)")
    if decomposition is None:
        decomposition = decompose(model, images=images)
    if decomposition.heads.shape[0] < 2:
        raise ValueError("TextSpan needs the outputs over several images (a variance); pass at least 2")
    n_layers, n_heads = decomposition.n_layers, decomposition.n_heads
    if heads is None:
        heads = [(layer, head) for layer in range(n_layers) for head in range(n_heads)]
    vectors = model.text_embeds(texts)
    result = {}
    for layer, head in heads:
        layer = _resolve(layer, n_layers)
        result[(layer, head)] = text_span(decomposition.heads[:, layer, head], vectors, texts, n, layer=layer, head=head)
    return result


def word_share(result: TextSpanResult, words) -> float:
    """Variance share of the picked texts that contain any of ``words`` (e.g. the colour names)."""
    words = [w.lower() for w in words]
    return float(sum(s for t, s in zip(result.texts, result.variance_share) if any(w in t.lower() for w in words)))
