"""A second, independent renderer of shapes scenes, for evaluation only.

The shapes world (``clipviz.data.shapes``) rasterises its shapes analytically in numpy with its own
HSV colour ranges. A model that has only learned that renderer's pixels can look better than it is,
so held-out accuracy is also measured on scenes drawn here with *different* code: Pillow's
``ImageDraw`` primitives (``ellipse``, ``rectangle``, ``regular_polygon``, ``polygon``), CSS named
colours (the web palette, not the shapes world's ranges), Pillow's own anti-aliasing (draw at 4x,
downsample with Lanczos), canvases of 64 to 160 pixels on a side (resized by the processor), and
plain or two-tone backgrounds. Testing under a shift of renderer is the "independent test set"
advice of Recht et al. 2019 ("Do ImageNet Classifiers Generalize to ImageNet?").

Training code never imports this module (``tests/test_shapes.py`` checks the import graph).

    >>> from clipviz.data import drawn
    >>> scene = drawn.sample(1, seed=0)[0]
    >>> scene.objects[0].color in ("red", "orange", "yellow", "green", "blue", "purple")
    True
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageColor, ImageDraw

from clipviz.data.shapes import COLORS, SHAPES, Scene, ShapeObject, boxed_object, check_request

#: CSS named colours a person would call by each name (their own values, not the shapes world's)
CSS_COLORS = {
    "red": ("red", "crimson", "firebrick", "tomato", "#d62728"),
    "orange": ("orange", "darkorange", "#ff7f0e", "#f28e2b"),
    "yellow": ("gold", "yellow", "#ffd92f", "#edc948"),
    "green": ("green", "forestgreen", "limegreen", "seagreen", "#2ca02c"),
    "blue": ("blue", "royalblue", "dodgerblue", "mediumblue", "#1f77b4"),
    "purple": ("purple", "darkviolet", "rebeccapurple", "mediumpurple", "#9467bd"),
}
CSS_BACKGROUNDS = ("white", "whitesmoke", "ivory", "lightgray", "gainsboro", "dimgray", "black", "linen")
_SCALE = 4  # anti-aliasing: draw at 4x, downsample


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill, outline,
                width: int, rotation: float) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=fill, outline=outline, width=width)
    elif shape == "square":
        side = r * 0.85  # a square of the same area feel, axis-aligned or slightly turned
        draw.regular_polygon((cx, cy, side * math.sqrt(2)), 4, rotation=rotation, fill=fill,
                             outline=outline, width=width)
    elif shape == "diamond":  # a rhombus, taller than wide as people draw it
        points = [(cx, cy - r), (cx + 0.75 * r, cy), (cx, cy + r), (cx - 0.75 * r, cy)]
        draw.polygon(points, fill=fill, outline=outline, width=width)
    elif shape == "triangle":
        draw.regular_polygon((cx, cy + 0.15 * r, r), 3, rotation=rotation, fill=fill, outline=outline,
                             width=width)
    else:  # star: five points, inner radius 0.4
        points = [(cx + rad * math.sin(a), cy - rad * math.cos(a))
                  for k in range(10) for rad, a in [((r, 0.4 * r)[k % 2], math.radians(rotation) + k * math.pi / 5)]]
        draw.polygon(points, fill=fill, outline=outline, width=width)


def _scene(rng: np.random.Generator, n_objects: int) -> Scene:
    short = int(rng.choice([64, 96, 128, 160]))
    long_side = short if rng.random() < 0.6 else int(short * rng.uniform(1.1, 1.5))
    width, height = (long_side, short) if rng.random() < 0.5 else (short, long_side)
    background = CSS_BACKGROUNDS[rng.integers(len(CSS_BACKGROUNDS))]
    antialias = bool(rng.random() < 0.5)
    scale = _SCALE if antialias else 1
    image = Image.new("RGB", (width * scale, height * scale), background)
    draw = ImageDraw.Draw(image)
    if rng.random() < 0.3:  # a two-tone background: one half a little darker or lighter
        shift = int(rng.integers(-40, 41))
        tone = tuple(int(np.clip(v + shift, 0, 255)) for v in ImageColor.getrgb(background))
        draw.rectangle((0, 0, width * scale // 2, height * scale), fill=tone)
    back_rgb = np.array(ImageColor.getrgb(background))
    # objects stay inside the centre square a processor keeps after resizing the short side
    left, top = (width - short) / 2, (height - short) / 2
    placed: list[tuple] = []
    objects: list[ShapeObject] = []
    while len(objects) < n_objects:
        color, shape = COLORS[rng.integers(len(COLORS))], SHAPES[rng.integers(len(SHAPES))]
        name = CSS_COLORS[color][rng.integers(len(CSS_COLORS[color]))]
        if np.abs(np.array(ImageColor.getrgb(name)) - back_rgb).sum() < 150:
            continue
        size = "small" if rng.random() < 0.5 else "large"
        # two objects: a large one of radius 0.4 near the centre leaves no room for a second (the
        # placement loop never ended for some seeds), so "large" stops at 0.3, as the shapes world caps it
        fraction = rng.uniform(0.12, 0.2) if size == "small" else rng.uniform(0.25, 0.3 if n_objects == 2 else 0.45)
        r = fraction * short
        cx = left + rng.uniform(r + 2, short - r - 2)
        cy = top + rng.uniform(r + 2, short - r - 2)
        if any((c, s) == (color, shape) for c, s, *_ in placed):
            continue
        if any(math.hypot(cx - x, cy - y) < r + rr + 3 for *_, x, y, rr in placed):
            continue
        placed.append((color, shape, cx, cy, r))
        outlined = rng.random() < 0.2
        fill = None if outlined else name
        stroke_width = max(1, int(round(short * 0.03))) * scale
        _draw_shape(draw, shape, cx * scale, cy * scale, r * scale, fill, name if outlined else None,
                    stroke_width if outlined else 0, float(rng.uniform(-10, 10)))
        objects.append(boxed_object(color, shape, size, cx, cy, r, width, height))  # no pixel mask here
    if antialias:
        image = image.resize((width, height), Image.LANCZOS)
    pixels = np.asarray(image).copy()
    pixels.flags.writeable = False
    return Scene(pixels=pixels, objects=tuple(objects), background=background)


def sample(n: int, seed: int = 0, objects: int = 1) -> list[Scene]:
    """``n`` scenes drawn with Pillow, deterministic in ``seed`` for one Pillow version.

    Same ``Scene`` format as the shapes world, but ``mask`` is each object's bounding square and
    ``background`` a CSS colour name.
    """
    check_request(n, objects)
    return [_scene(np.random.default_rng([seed, objects, i, 7]), objects) for i in range(n)]
