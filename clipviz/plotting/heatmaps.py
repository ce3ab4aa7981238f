"""Renderers for heatmaps: overlays, word scores, layer × head grids, faithfulness curves.

They take computed objects (``clipviz.heatmaps.Heatmap``, arrays from ``layer_head_grids``,
``clipviz.heatmap_eval.FaithfulnessCurve``) and ``ax=None``; they never run a model.
:func:`blend` is the numpy overlay behind ``Heatmap.overlay()`` and the AttentionApp's picture
(no matplotlib figure: a few milliseconds per frame).
"""

from __future__ import annotations

import numpy as np


def colour_table(cmap: str = "jet") -> np.ndarray:
    """``[256, 3]`` float RGB of a matplotlib colormap (looked up once, reused per frame)."""
    from matplotlib import colormaps

    return colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3]


def blend(base: np.ndarray, values: np.ndarray, alpha: float = 0.5, cmap="jet") -> np.ndarray:
    """``base`` (uint8 ``[H, W, 3]``) with ``values`` (``[H, W]`` in [0, 1], NaN = no map) blended over it.

    ``alpha`` is the map's opacity; ``cmap`` a colormap name or a table from :func:`colour_table`.
    Returns uint8 ``[H, W, 3]``.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    table = colour_table(cmap) if isinstance(cmap, str) else cmap
    index = np.clip(np.rint(np.nan_to_num(values, nan=0.0) * 255.0), 0, 255).astype(np.intp)
    weight = np.where(np.isnan(values), np.float32(0.0), np.float32(alpha))[..., None]
    colours = (np.asarray(table, dtype=np.float32) * 255.0)[index]
    blended = base.astype(np.float32) + weight * (colours - base)
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def _axes(ax, figsize=(4, 4)):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def plot_heatmap(heatmap, ax=None, alpha: float = 0.5, cmap: str = "jet", show_sinks: bool = True,
                 colorbar: bool = False, title: bool = True):
    """The original image with ``heatmap.image_map`` over it (transparent outside the crop).

    ``alpha``: opacity of the map; ``show_sinks``: outline detected sink patches (Darcet et al.
    2024) with dashed white squares. Returns the axes.
    """
    import matplotlib.patches as patches

    ax = _axes(ax)
    width, height = heatmap.image.size
    ax.imshow(heatmap.image, extent=(0, width, height, 0), interpolation="nearest")
    values = np.ma.masked_invalid(heatmap.image_map)
    artist = ax.imshow(values, cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0, extent=(0, width, height, 0),
                       interpolation="nearest")
    if show_sinks and heatmap.sinks is not None and heatmap.sinks.any():
        x0, y0, x1, y1 = heatmap.geometry.crop_box
        gh, gw = heatmap.sinks.shape
        cw, ch = (x1 - x0) / gw, (y1 - y0) / gh
        for r, c in zip(*np.nonzero(heatmap.sinks)):
            ax.add_patch(patches.Rectangle((x0 + c * cw, y0 + r * ch), cw, ch, fill=False,
                                           edgecolor="white", linestyle="--", linewidth=1))
    if colorbar:
        ax.figure.colorbar(artist, ax=ax, fraction=0.046, pad=0.04)
    if title:
        label = heatmap.method if heatmap.text is None else f"{heatmap.method}: {heatmap.text!r}"
        ax.set_title(label, fontsize=9)
    ax.set_axis_off()
    return ax


def plot_token_scores(heatmap, ax=None, cmap: str = "Oranges"):
    """The text's word pieces as a row of boxes shaded by relevance (``heatmap.token_scores``)."""
    from matplotlib import colormaps

    ax = _axes(ax, figsize=(6, 0.8))
    ax.set_axis_off()
    if heatmap.tokens is None:
        ax.text(0, 0.5, "no token scores (use method='relevance')", va="center", fontsize=9)
        return ax
    colours = colormaps[cmap]
    x = 0.0
    for piece, score in zip(heatmap.tokens, heatmap.token_scores):
        label = piece.strip() or "␣"
        ax.text(x, 0.5, label, va="center", ha="left", fontsize=11,
                bbox=dict(facecolor=colours(0.85 * float(score)), edgecolor="none", pad=2))
        x += 0.03 + 0.022 * len(label)
    ax.set_xlim(0, max(x, 1.0))
    ax.set_ylim(0, 1)
    return ax


def plot_layer_head_grid(grids: np.ndarray, fig=None, cmap: str = "viridis", head_labels=None):
    """All layers × heads of CLS-to-patch attention: ``grids`` is ``[layer, head(+mean), gh, gw]``.

    (From :func:`clipviz.heatmaps.layer_head_grids`; the last column is the head mean.)
    Returns the figure.
    """
    import matplotlib.pyplot as plt

    n_layers, n_cols = grids.shape[:2]
    if fig is None:
        fig = plt.figure(figsize=(1.1 * n_cols + 0.6, 1.1 * n_layers + 0.4))
    fig.clear()
    axes = fig.subplots(n_layers, n_cols, squeeze=False)
    labels = head_labels or [f"h{h}" for h in range(n_cols - 1)] + ["mean"]
    for layer in range(n_layers):
        for col in range(n_cols):
            ax = axes[layer, col]
            ax.imshow(np.ma.masked_invalid(grids[layer, col]), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if layer == 0:
                ax.set_title(labels[col], fontsize=8)
            if col == 0:
                ax.set_ylabel(f"L{layer}", fontsize=8)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return fig


def plot_faithfulness(curves, ax=None):
    """Deletion/insertion curves (one or several ``FaithfulnessCurve``) with their random baselines."""
    ax = _axes(ax, figsize=(4, 3))
    curves = [curves] if not isinstance(curves, (list, tuple)) else curves
    for curve in curves:
        line, = ax.plot(curve.fractions, curve.scores, label=f"{curve.kind} (AUC {curve.auc:.2f})")
        ax.plot(curve.fractions, curve.random_scores, linestyle=":", color=line.get_color(),
                label=f"{curve.kind}, random order (AUC {curve.random_auc:.2f})")
    ax.set_xlabel("fraction of patches")
    ax.set_ylabel("image–text logit")
    ax.legend(fontsize=7)
    return ax
