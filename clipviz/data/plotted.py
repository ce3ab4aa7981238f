"""A third renderer of shapes scenes, for evaluation only: matplotlib patches on an Agg canvas.

``clipviz.data.drawn`` (Pillow) was written to hold the bundled models to account, and the
curriculum that trains them was chosen while watching it. This module is a second held-out renderer
written after that choice and never used to choose anything: its figures only report. Its own
drawing code and conventions: matplotlib's patches (``Circle``, ``Rectangle``, ``RegularPolygon``,
``Polygon``) rasterised by Agg's anti-aliasing, colours from matplotlib's Tableau and xkcd palettes
and ColorBrewer's Set1 (not the shapes world's HSV ranges nor the CSS names of ``drawn``), canvases
of 72 to 200 pixels in either orientation, filled shapes with or without a dark pen outline (as a
child colours in a drawing), outlined-only shapes, and flat or two-tone paper colours.

Training code never imports this module (``tests/test_shapes.py`` checks the import graph).

    >>> from clipviz.data import plotted
    >>> scene = plotted.sample(1, seed=0)[0]
    >>> scene.objects[0].shape in ("circle", "square", "triangle", "diamond", "star")
    True
"""

from __future__ import annotations

import math

import numpy as np

from clipviz.data.shapes import COLORS, SHAPES, Scene, ShapeObject, boxed_object, check_request

#: matplotlib colour specs a person would call by each name
PALETTE = {
    "red": ("tab:red", "xkcd:red", "xkcd:scarlet", "#e41a1c"),
    "orange": ("tab:orange", "xkcd:orange", "xkcd:tangerine", "#ff7f00"),
    "yellow": ("xkcd:yellow", "xkcd:sunflower yellow", "#ffff33", "xkcd:bright yellow"),
    "green": ("tab:green", "xkcd:green", "xkcd:kelly green", "#4daf4a"),
    "blue": ("tab:blue", "xkcd:blue", "xkcd:royal blue", "#377eb8"),
    "purple": ("tab:purple", "xkcd:purple", "xkcd:violet", "#984ea3"),
}
PAPERS = ("white", "0.93", "xkcd:off white", "xkcd:eggshell", "0.8", "0.35", "0.12", "xkcd:light grey blue")
PENS = ("black", "0.2", "xkcd:dark grey")


def _patch(shape: str, cx: float, cy: float, r: float, angle: float, **style):
    from matplotlib import patches

    if shape == "circle":
        return patches.Circle((cx, cy), r, **style)
    if shape == "square":
        side = 1.5 * r
        # Rectangle turns about its corner: place that corner so the square's centre is (cx, cy)
        t = math.radians(angle)
        corner = (cx - side / 2 * (math.cos(t) - math.sin(t)), cy - side / 2 * (math.sin(t) + math.cos(t)))
        return patches.Rectangle(corner, side, side, angle=angle, **style)
    if shape == "diamond":  # a square on its point, drawn a little taller than wide
        return patches.Polygon([(cx, cy + r), (cx + 0.8 * r, cy), (cx, cy - r), (cx - 0.8 * r, cy)], **style)
    if shape == "triangle":
        return patches.RegularPolygon((cx, cy), 3, radius=r, orientation=math.radians(angle), **style)
    inner = 0.42
    points = [(cx + rad * math.sin(a), cy + rad * math.cos(a))
              for k in range(10) for rad, a in [((r, inner * r)[k % 2], math.radians(angle) + k * math.pi / 5)]]
    return patches.Polygon(points, **style)


def _scene(rng: np.random.Generator, n_objects: int) -> Scene:
    from matplotlib import colors as mcolors
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    short = int(rng.integers(72, 201))
    long_side = short if rng.random() < 0.5 else int(short * rng.uniform(1.05, 1.6))
    width, height = (long_side, short) if rng.random() < 0.5 else (short, long_side)
    paper = PAPERS[rng.integers(len(PAPERS))]
    paper_rgb = np.array(mcolors.to_rgb(paper))
    figure = Figure(figsize=(width / 100, height / 100), dpi=100)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(0, width)
    axes.set_ylim(height, 0)  # y down, pixel units, as the ground-truth boxes are
    axes.set_axis_off()
    axes.add_patch(_rect((0, 0), width, height, paper))
    if rng.random() < 0.3:  # two-tone paper: a band of a slightly different shade
        shade = np.clip(paper_rgb + rng.uniform(-0.12, 0.12), 0, 1)
        axes.add_patch(_rect((0, 0), width, height * rng.uniform(0.3, 0.7), tuple(shade)))
    left, top = (width - short) / 2, (height - short) / 2  # the square a processor's centre crop keeps
    objects: list[ShapeObject] = []
    placed: list[tuple] = []
    while len(objects) < n_objects:
        color, shape = COLORS[rng.integers(len(COLORS))], SHAPES[rng.integers(len(SHAPES))]
        spec = PALETTE[color][rng.integers(len(PALETTE[color]))]
        if np.abs(np.array(mcolors.to_rgb(spec)) - paper_rgb).sum() < 0.6:
            continue  # would vanish into the paper
        size = "small" if rng.random() < 0.5 else "large"
        fraction = rng.uniform(0.11, 0.19) if size == "small" else rng.uniform(0.24, 0.3 if n_objects == 2 else 0.44)
        r = fraction * short
        cx, cy = left + rng.uniform(r + 2, short - r - 2), top + rng.uniform(r + 2, short - r - 2)
        if any((c, s) == (color, shape) for c, s, *_ in placed):
            continue
        if any(math.hypot(cx - x, cy - y) < r + rr + 4 for *_, x, y, rr in placed):
            continue
        placed.append((color, shape, cx, cy, r))
        angle = float(rng.uniform(-12, 12)) if shape in ("square", "diamond") else float(rng.uniform(0, 360))
        style = rng.random()
        pen = max(1.0, short / 60) * 72 / 100  # points: about 1 px per 60 px of canvas
        if style < 0.2:  # outline only
            kwargs = dict(fill=False, edgecolor=spec, linewidth=pen * rng.uniform(2, 3.5))
        elif style < 0.45:  # coloured in, with a dark pen line round it
            kwargs = dict(facecolor=spec, edgecolor=PENS[rng.integers(len(PENS))], linewidth=pen * rng.uniform(1, 2))
        else:
            kwargs = dict(facecolor=spec, edgecolor="none")
        axes.add_patch(_patch(shape, cx, cy, r, angle, **kwargs))
        objects.append(boxed_object(color, shape, size, cx, cy, r, width, height))  # no pixel mask here
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    pixels = np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[:height, :width, :3])
    pixels.flags.writeable = False
    return Scene(pixels=pixels, objects=tuple(objects), background=str(paper))


def _rect(corner, width, height, color):
    from matplotlib.patches import Rectangle

    return Rectangle(corner, width, height, facecolor=color, edgecolor="none")


def sample(n: int, seed: int = 0, objects: int = 1) -> list[Scene]:
    """``n`` scenes drawn with matplotlib, deterministic in ``seed`` for one matplotlib version.

    Same ``Scene`` format as the shapes world, but ``mask`` is each object's bounding square and
    ``background`` a matplotlib colour spec.
    """
    check_request(n, objects)
    return [_scene(np.random.default_rng([seed, objects, i, 11]), objects) for i in range(n)]
