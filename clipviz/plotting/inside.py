"""Matplotlib renderers for the inside-the-model analyses (clipviz.inside): they never run a model.

``plot_logit_attribution`` draws a :class:`~clipviz.inside.attribution.LogitAttribution` as a
layer × head table (plus the MLPs), ``plot_head_patches`` one head's per-patch contributions over
the image, ``plot_logit_lens`` the similarity of every layer's projected state to some texts.
"""

from __future__ import annotations

import numpy as np


def _axes(ax, figsize=(4, 4)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _symmetric_limit(values) -> float:
    limit = float(np.abs(values).max()) if np.size(values) else 1.0
    return limit or 1.0


def plot_logit_attribution(attribution, ax=None, mlps: bool = True, annotate: bool = True, selected=None):
    """Layer × head table of direct logit contributions (red adds to the logit, blue takes away).

    With ``mlps`` the MLPs form an extra last column. ``selected=(layer, head)`` outlines one cell.
    Returns the axes.
    """
    from matplotlib.patches import Rectangle

    table = attribution.heads
    if mlps:
        table = np.concatenate([table, attribution.mlps[:, None]], axis=1)
    n_layers, n_cols = table.shape
    ax = _axes(ax, figsize=(1.0 + 0.6 * n_cols, 0.8 + 0.5 * n_layers))
    limit = _symmetric_limit(table)
    ax.imshow(table, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    labels = [str(h) for h in range(attribution.heads.shape[1])] + (["MLP"] if mlps else [])
    ax.set_xticks(range(n_cols), labels)
    ax.set_yticks(range(n_layers), [str(layer) for layer in range(n_layers)])
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    if mlps:
        ax.axvline(n_cols - 1.5, color="black", lw=1)
    if annotate:
        for (row, col), value in np.ndenumerate(table):
            ax.text(col, row, f"{value:+.1f}", ha="center", va="center", fontsize=7,
                    color="white" if abs(value) > 0.6 * limit else "black")
    if selected is not None:
        layer, head = selected
        ax.add_patch(Rectangle((head - 0.5, layer - 0.5), 1, 1, fill=False, ec="black", lw=2.5))
    ax.set_title(f"direct logit attribution: {attribution.text!r}\nlogit {attribution.logit:.2f} "
                 f"(embed {attribution.embed:+.2f}, biases {attribution.remainder:+.2f})", fontsize=9)
    return ax


def plot_head_patches(attribution, layer: int, head: int, image=None, ax=None, alpha: float = 0.6):
    """One head's per-patch contributions to the logit, over ``image`` (a PIL image, optional).

    The layer must have been decomposed per position (``logit_attribution(..., positions=[layer])``).
    The map covers the processor's centre crop. Returns the axes.
    """
    n_layers = attribution.heads.shape[0]
    layer = layer % n_layers
    if layer not in attribution.patch_maps:
        raise KeyError(f"no per-patch map for layer {layer}; decompose it: positions=[{layer}] "
                       f"(available: {sorted(attribution.patch_maps)})")
    values = attribution.patch_maps[layer][head]
    ax = _axes(ax)
    limit = _symmetric_limit(values)
    if image is not None:
        side = min(image.size)
        left, top = (image.size[0] - side) // 2, (image.size[1] - side) // 2
        ax.imshow(image.crop((left, top, left + side, top + side)), extent=(0, 1, 1, 0))
    ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=alpha if image is not None else 1.0,
              extent=(0, 1, 1, 0), interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(f"L{layer}H{head}: {attribution.heads[layer, head]:+.2f} to the logit", fontsize=9)
    return ax


def plot_logit_lens(similarities, labels, texts, ax=None):
    """Cosine of each layer's projected state (rows of ``cache.accumulated_resid``) to texts.

    ``similarities``: ``[n_states, n_texts]`` (e.g. ``lens[:, 0] @ text_embeds.T``). Returns the axes.
    """
    similarities = np.asarray(similarities)
    ax = _axes(ax, figsize=(5, 3))
    for column, text in enumerate(texts):
        ax.plot(range(len(labels)), similarities[:, column], "o-", label=text)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("cosine to the text")
    ax.legend(fontsize=8)
    return ax
