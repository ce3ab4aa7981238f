"""Maps of the joint embedding space: images as points or thumbnails, texts as labelled markers,
lines between image–text pairs that belong together. Nothing here runs a model."""

from __future__ import annotations

import numpy as np

IMAGE_COLOUR = "#1f77b4"
TEXT_COLOUR = "#d62728"
MAX_LABEL_COLOURS = 20  # tab20; more labels than this are coloured by a continuous map, without a legend
MAX_PAIR_LINES = 5_000  # beyond this, lines are an unreadable mesh: draw a random subset


def plot_embedding_map(coords, embeddings, *, ax=None, color_by: str = "modality", thumbnails: bool | None = None,
                       pairs: bool | None = None, annotate_texts: bool | int = True, highlight: int | None = None,
                       point_size: float | None = None, legend: bool = True, title: str | None = None):
    """Draw a 2-D map of an :class:`clipviz.embeddings.Embeddings` at ``coords`` ``[n, 2]``.

    ``color_by``: ``"modality"`` (images one colour, texts another) or ``"label"``.
    ``thumbnails``: draw images as their thumbnails (default: when there are at most 300 images and
    thumbnails exist). ``pairs``: lines between matched image–text rows (``embeddings.matched_pairs()``;
    default: when there are any). ``annotate_texts``: write each text beside its marker (an int: at most
    that many). ``highlight``: a row to ring. Returns the axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle

    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] < 2 or len(coords) != len(embeddings):
        raise ValueError(f"coords must be [n, 2] with n = {len(embeddings)} rows, got shape {coords.shape}")
    if color_by not in ("modality", "label"):
        raise ValueError(f"color_by must be 'modality' or 'label', not {color_by!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 6))
    is_image, is_text = embeddings.is_image, embeddings.is_text
    n = len(coords)
    size = point_size or float(np.clip(3000 / max(n, 1), 4, 40))

    colours, handles = _colours(embeddings, color_by)
    if pairs is None:
        pairs = len(embeddings.matched_pairs()) > 0
    if pairs:
        matched = embeddings.matched_pairs()
        if len(matched) > MAX_PAIR_LINES:
            matched = matched[np.random.default_rng(0).choice(len(matched), MAX_PAIR_LINES, replace=False)]
        if len(matched):
            segments = np.stack([coords[matched[:, 0], :2], coords[matched[:, 1], :2]], axis=1)
            ax.add_collection(LineCollection(segments, colors="0.5", linewidths=0.5, alpha=0.25, zorder=1))
            handles.append(Line2D([], [], color="0.5", lw=1, alpha=0.6, label="matched pair"))

    thumbs_available = len(embeddings.thumbnails) == int(is_image.sum()) and int(is_image.sum()) > 0
    if thumbnails is None:
        thumbnails = thumbs_available and is_image.sum() <= 300
    if thumbnails and not thumbs_available:
        raise ValueError("these embeddings have no thumbnails (embed(..., thumbnail_size=0), or vectors only)")
    image_rows = np.flatnonzero(is_image)
    if thumbnails:
        span = np.ptp(coords[:, :2], axis=0).max() or 1.0
        half = span / max(25, 2.5 * np.sqrt(len(image_rows)))
        for k, row in enumerate(image_rows):
            x, y = coords[row, :2]
            ax.imshow(np.asarray(embeddings.thumbnails[k]), extent=(x - half, x + half, y - half, y + half),
                      zorder=2, interpolation="nearest")
            if color_by == "label":  # a frame in the label's colour, so thumbnails still show their class
                ax.add_patch(Rectangle((x - half, y - half), 2 * half, 2 * half, fill=False,
                                       edgecolor=colours[row], linewidth=1.2, zorder=3))
        ax.scatter(coords[image_rows, 0], coords[image_rows, 1], s=0, c=colours[image_rows])  # for autoscale
    elif len(image_rows):
        ax.scatter(coords[image_rows, 0], coords[image_rows, 1], s=size, c=colours[image_rows], marker="o",
                   linewidths=0, alpha=0.8, zorder=2)
    text_rows = np.flatnonzero(is_text)
    if len(text_rows):
        ax.scatter(coords[text_rows, 0], coords[text_rows, 1], s=max(3 * size, 40), c=colours[text_rows],
                   marker="*", edgecolors="black", linewidths=0.6, zorder=4)
        limit = len(text_rows) if annotate_texts is True else int(annotate_texts or 0)
        for row in text_rows[:limit]:
            ax.annotate(_short(embeddings.sources[row]), coords[row, :2], xytext=(4, 3), textcoords="offset points",
                        fontsize=7, zorder=5)
    if highlight is not None and 0 <= highlight < n:
        ax.scatter(*coords[highlight, :2], s=max(8 * size, 150), facecolors="none", edgecolors="black",
                   linewidths=1.5, zorder=6)

    if color_by == "modality":
        handles = [
            Line2D([], [], ls="", marker="o", color=IMAGE_COLOUR, label=f"image ({len(image_rows)})"),
            Line2D([], [], ls="", marker="*", markersize=10, color=TEXT_COLOUR, markeredgecolor="black",
                   label=f"text ({len(text_rows)})"),
        ] + [h for h in handles if h.get_label() == "matched pair"]
    else:
        handles = [
            Line2D([], [], ls="", marker="o", color="0.4", label="image"),
            Line2D([], [], ls="", marker="*", markersize=10, color="0.4", markeredgecolor="black", label="text"),
        ] + handles
    if legend and handles:
        ax.legend(handles=handles, loc="best", fontsize=7, framealpha=0.8)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal", adjustable="datalim")
    ax.autoscale_view()
    if title is not None:
        ax.set_title(title)
    return ax


def _colours(embeddings, color_by: str):
    """Per-row RGBA colours and legend handles for them."""
    from matplotlib import colormaps, colors
    from matplotlib.lines import Line2D

    n = len(embeddings)
    if color_by == "modality":
        rgba = np.empty((n, 4))
        rgba[embeddings.is_image] = colors.to_rgba(IMAGE_COLOUR)
        rgba[embeddings.is_text] = colors.to_rgba(TEXT_COLOUR)
        return rgba, []
    labels = ["(none)" if label is None else str(label) for label in embeddings.labels]
    names = list(dict.fromkeys(labels))  # first-seen order: stable across runs
    code = {name: i for i, name in enumerate(names)}
    if len(names) <= MAX_LABEL_COLOURS:
        palette = colormaps["tab20" if len(names) > 10 else "tab10"]
        table = [palette(i) for i in range(len(names))]
        handles = [Line2D([], [], ls="", marker="s", color=table[i], label=name) for i, name in enumerate(names)]
    else:
        palette = colormaps["turbo"]
        table = [palette(i / max(len(names) - 1, 1)) for i in range(len(names))]
        handles = []
    return np.array([table[code[label]] for label in labels]), handles


def _short(text: str, limit: int = 28) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
