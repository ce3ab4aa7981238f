"""Direct logit attribution: each part's share of an image–text logit.

CLIP's logit is ``s = scale · ⟨e / ‖e‖, t⟩`` for the image's pre-normalisation embedding ``e`` and
the text's unit embedding ``t``. With ``e = Σ_i c_i`` (a :class:`~clipviz.inside.decomposition.Decomposition`)
the logit is a sum too: ``s = Σ_i scale · ⟨c_i, t⟩ / ‖e‖`` — each head's, MLP's and patch's *direct*
effect (what it writes straight into the embedding, not what it does through later layers). This is
TransformerLens' direct logit attribution (Elhage et al., "A Mathematical Framework for Transformer
Circuits", 2021) read through CLIP's head, and the image-side reading of Gandelsman et al. (ICLR 2024).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .decomposition import Decomposition, decompose


@dataclass
class LogitAttribution:
    """Direct contributions of the image tower's parts to one image–text logit.

    ``heads`` ``[layer, head]``, ``mlps`` ``[layer]``, ``embed`` and ``remainder`` (floats);
    ``patch_maps[L]`` ``[head, grid_h, grid_w]`` for the layers decomposed per position (the CLS
    token's own share is in ``cls_share[L]`` ``[head]``). ``heads.sum() + mlps.sum() + embed +
    remainder == logit``.
    """

    text: str
    logit: float
    heads: np.ndarray
    mlps: np.ndarray
    embed: float
    remainder: float
    patch_maps: dict[int, np.ndarray] = field(default_factory=dict)
    cls_share: dict[int, np.ndarray] = field(default_factory=dict)

    def total(self) -> float:
        """The sum of the parts (equals ``logit`` up to rounding)."""
        return float(self.heads.sum() + self.mlps.sum() + self.embed + self.remainder)

    def top_heads(self, k: int = 5) -> list[tuple[int, int, float]]:
        """The ``k`` heads with the largest |contribution|: ``(layer, head, contribution)``."""
        order = np.argsort(-np.abs(self.heads), axis=None)[:k]
        return [(int(i // self.heads.shape[1]), int(i % self.heads.shape[1]), float(self.heads.flat[i])) for i in order]

    def plot(self, ax=None, **options):
        """Layer × head table as a heatmap (see :func:`clipviz.plotting.inside.plot_logit_attribution`)."""
        from ..plotting.inside import plot_logit_attribution

        return plot_logit_attribution(self, ax=ax, **options)

    def __repr__(self) -> str:
        top = ", ".join(f"L{l}H{h} {c:+.2f}" for l, h, c in self.top_heads(3))
        return f"LogitAttribution({self.text!r}: logit {self.logit:.2f}; top heads {top})"


def attribute(decomposition: Decomposition, text_embed: torch.Tensor, scale: float, grid, *, item: int = 0,
              text: str = "") -> LogitAttribution:
    """Project one image's decomposition (batch row ``item``) onto a unit text embedding."""
    t = text_embed.reshape(-1).double()
    norm = decomposition.total[item].double().norm()
    factor = scale / norm

    def share(part: torch.Tensor) -> np.ndarray:
        return (part.double() @ t * factor).numpy()

    maps, cls = {}, {}
    for layer, per_position in decomposition.positions.items():
        values = share(per_position[item])  # [head, pos]
        cls[layer] = values[:, 0]
        maps[layer] = values[:, 1:].reshape(values.shape[0], *grid)
    return LogitAttribution(
        text=text,
        logit=float(decomposition.total[item].double() @ t * factor),
        heads=share(decomposition.heads[item]),
        mlps=share(decomposition.mlps[item]),
        embed=float(share(decomposition.embed[item])),
        remainder=float(share(decomposition.remainder[item])),
        patch_maps=maps,
        cls_share=cls,
    )


def logit_attribution(model, image, text: str, *, positions=(-1,)) -> LogitAttribution:
    """Direct logit attribution of ``image`` (one image) to ``text`` (one string).

    ``positions``: the layers whose heads are also split over patches (``patch_maps``; default
    the last layer). The parts sum to ``model.logits(image, text)``.
    """
    decomposition = decompose(model, images=[image], positions=positions)
    text_embed = model.text_embeds([text])[0]
    return attribute(decomposition, text_embed, model.logit_scale, model.grid_size, text=text)
