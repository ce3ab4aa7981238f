"""Matplotlib renderers for zero-shot results: an image beside its label bars, and comparisons.

They take :class:`clipviz.zeroshot.ZeroShotResult` / ``ZeroShotComparison`` objects and ``ax=None``;
they never run a model.
"""

from __future__ import annotations

import re
import warnings

import numpy as np

_BAR_COLOUR = "#4c72b0"
_TOP_COLOUR = "#dd8452"


_CJK = re.compile(r"[\u3000-\u9fff\uac00-\ud7af\uff00-\uffef]")
_warned_no_cjk_font = False


def _cjk_fonts(texts) -> None:
    """Let matplotlib fall back to a CJK font when ``texts`` hold Chinese (or Japanese, Korean) labels.

    Without any CJK font installed such labels render as boxes; say so once, plainly, instead of
    matplotlib's one warning per missing glyph.
    """
    global _warned_no_cjk_font
    if not any(_CJK.search(t) for t in texts):
        return
    from matplotlib import font_manager, rcParams

    installed = {f.name for f in font_manager.fontManager.ttflist}
    wanted = [name for name in ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans SC", "WenQuanYi Zen Hei",
                                "WenQuanYi Micro Hei", "Source Han Sans SC", "SimHei", "Microsoft YaHei",
                                "PingFang SC", "Arial Unicode MS") if name in installed]
    if wanted:
        family = list(rcParams["font.sans-serif"])
        rcParams["font.sans-serif"] = [name for name in wanted if name not in family] + family
        return
    if not _warned_no_cjk_font:
        _warned_no_cjk_font = True
        warnings.warn(
            "no CJK font is installed, so Chinese/Japanese/Korean labels show as boxes in figures "
            "(the numbers are right). Install one (e.g. `apt install fonts-noto-cjk` or "
            "`conda install -c conda-forge font-ttf-noto-cjk`) and restart the kernel.",
            stacklevel=3,
        )
    # matplotlib would otherwise repeat that once per missing glyph, at every draw (re-added each
    # time, as warning filters may have been reset since)
    warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font", category=UserWarning)


def plot_bars(result, image: int = 0, k: int = 10, ax=None, title: str | None = None):
    """Horizontal bars of image ``image``'s ``k`` most probable labels, best on top. Returns the axes."""
    import matplotlib.pyplot as plt

    pairs = result.top(k, image=image)
    _cjk_fonts([label for label, _ in pairs])
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 0.3 * min(k, len(result.labels)) + 0.8))
    labels = [label for label, _ in pairs][::-1]
    probs = np.array([prob for _, prob in pairs])[::-1]
    colours = [_BAR_COLOUR] * (len(probs) - 1) + [_TOP_COLOUR]
    bars = ax.barh(range(len(probs)), probs, color=colours)
    ax.set_yticks(range(len(probs)), labels, fontsize=9)
    ax.set_xlim(0, 1.15)
    ax.set_xlabel("probability", fontsize=9)
    for bar, prob in zip(bars, probs):
        ax.text(bar.get_width() + 0.01, bar.get_y() + bar.get_height() / 2, f"{prob:.1%}", va="center", fontsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if title is None:
        n = len(result.templates)
        title = f"{len(result.labels)} labels · " + ("1 template" if n == 1 else f"ensemble of {n} templates")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_zeroshot(result, image: int = 0, k: int = 10, ax=None):
    """The image beside a horizontal bar chart of its ``k`` most probable labels.

    ``ax``: ``None`` (a new figure), a pair ``(image_ax, bars_ax)``, or one axes (bars only).
    Returns the figure.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        rows = min(k, len(result.labels))
        fig, (image_ax, bars_ax) = plt.subplots(
            1, 2, figsize=(7, max(2.4, 0.3 * rows + 0.8)), gridspec_kw={"width_ratios": [1, 1.6]}
        )
    elif isinstance(ax, (tuple, list, np.ndarray)):
        image_ax, bars_ax = ax
        fig = bars_ax.figure
    else:
        image_ax, bars_ax, fig = None, ax, ax.figure
    if image_ax is not None:
        image_ax.set_axis_off()
        if result.images:
            image_ax.imshow(result.images[image], interpolation="nearest")
        image_ax.set_title(f"image {image}: {result.predictions[image]}", fontsize=9)
    plot_bars(result, image=image, k=k, ax=bars_ax)
    if ax is None:
        fig.tight_layout()
    return fig


def plot_comparison(comparison, k: int = 5, images=None, axes=None):
    """One row per image: the image, then grouped horizontal bars, one colour per entry (model or language).

    The classes shown for an image are its ``k`` most probable on average over the entries; a
    class's tick reads "label / 标签 / ..." when entries name it differently. ``axes``: ``None`` or an
    array ``[n_images, 2]``. Returns the figure.
    """
    import matplotlib.pyplot as plt

    results = list(comparison.results.values())
    _cjk_fonts([label for r in results for label in r.labels])
    names = list(comparison.results)
    rows = list(range(len(results[0]))) if images is None else list(images)
    n_labels = len(results[0].labels)
    k = min(k, n_labels)
    if axes is None:
        height = max(1.8, 0.22 * k * len(results) + 0.6)
        fig, axes = plt.subplots(len(rows), 2, figsize=(8, height * len(rows)), squeeze=False,
                                 gridspec_kw={"width_ratios": [1, 2.6]})
    else:
        axes = np.asarray(axes).reshape(len(rows), 2)
        fig = axes[0, 0].figure
    colours = plt.get_cmap("tab10").colors
    bar_height = 0.8 / len(results)
    for row, image in enumerate(rows):
        image_ax, bars_ax = axes[row]
        image_ax.set_axis_off()
        if comparison.images:
            image_ax.imshow(comparison.images[image], interpolation="nearest")
        image_ax.set_title(f"image {image}", fontsize=9)
        stacked = np.stack([r.probs[image] for r in results])  # [entries, labels]
        shown = np.argsort(-stacked.mean(axis=0), kind="stable")[:k][::-1]  # best on top
        for e, (name, probs) in enumerate(zip(names, stacked)):
            offsets = np.arange(len(shown)) + (e - (len(results) - 1) / 2) * bar_height
            bars_ax.barh(offsets, probs[shown], height=bar_height, color=colours[e % len(colours)],
                         label=name if row == 0 else None)
        ticks = []
        for j in shown:
            words = list(dict.fromkeys(r.labels[j] for r in results))  # unique, in entry order
            ticks.append(" / ".join(words))
        bars_ax.set_yticks(range(len(shown)), ticks, fontsize=8)
        bars_ax.set_xlim(0, 1)
        for side in ("top", "right"):
            bars_ax.spines[side].set_visible(False)
        if row == len(rows) - 1:
            bars_ax.set_xlabel("probability", fontsize=9)
    handles, labels = axes[0, 1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=min(len(names), 3), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    return fig
