"""The shapes world: small synthetic scenes whose right answers are known.

Each scene is an RGB image with one or two coloured shapes, plus the ground truth of every object
(colour, shape, size, pixel box, pixel mask) and captions in several languages. The part a bundled
model sees (the processor's 64 x 64 centre crop) is an 8 x 8 grid of 8-pixel patches, so heatmaps
and zero-shot answers can be *checked* against the truth.

Two worlds share the words and the ground-truth format:

* ``world="wide"`` (what the bundled models learn second, after the plain world): anti-aliased or aliased
  edges, sizes from 10 pixels to nearly the whole frame, any position, rotations, anisotropic
  stretch, filled or outlined shapes, hand-drawn-like wobbly outlines, colour shades around each
  named colour (HSV ranges), plain / gradient / textured backgrounds, blur, noise, JPEG artefacts,
  and one image in five non-square (objects inside the centre crop a processor keeps). Wide
  variation is the usual cure for a model that only knows one renderer's pixels (domain
  randomisation, Tobin et al. 2017).
* ``world="plain"`` (the default, what the bundled models learn first, as shape is easy to see
  there): the first version's world (flat colours, two sizes, no anti-aliasing), byte for byte as before.

Determinism: every scene is drawn from its own ``numpy`` generator seeded with
``(seed, objects, index)`` (``(seed, objects, index, 1)`` for the wide world), and shapes are
rasterised analytically in ``numpy`` (coverage of 4 x 4 sub-pixel centres when anti-aliased), so
``sample(10, seed)[:5]`` equals ``sample(5, seed)`` and the same seed gives the same bytes. The wide
world's JPEG step uses Pillow's libjpeg: bytes are pinned for one Pillow/libjpeg build.

    >>> from clipviz.data import shapes
    >>> scene = shapes.sample(1, seed=0)[0]
    >>> scene.image.size
    (64, 64)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import product

import numpy as np
from PIL import Image

IMAGE_SIZE = 64
COLORS = ("red", "orange", "yellow", "green", "blue", "purple")
SHAPES = ("circle", "square", "triangle", "diamond", "star")
SIZES = ("small", "large")
LANGUAGES = ("en", "zh", "fr", "es", "de")
BACKGROUNDS = ("white", "light grey", "beige", "dark grey", "black")
#: every (colour, shape) pair, in the order used for zero-shot class labels
CLASSES = tuple(product(COLORS, SHAPES))

_RGB = {
    "red": (220, 40, 40), "orange": (245, 140, 20), "yellow": (240, 220, 30),
    "green": (40, 170, 60), "blue": (40, 90, 220), "purple": (140, 60, 190),
}
_BACKGROUND_RGB = {
    "white": (245, 245, 245), "light grey": (190, 190, 190), "beige": (230, 220, 195),
    "dark grey": (70, 70, 70), "black": (25, 25, 25),
}
_SIDE_RANGE = {"small": (12, 16), "large": (22, 28)}  # inclusive, pixels
_OBJECT_JITTER, _BACKGROUND_JITTER, _PIXEL_NOISE = 15, 15, 6
_MARGIN, _GAP = 2, 3  # pixels from the border; between the boxes of two objects

# ---------------------------------------------------------------- words, per language
# Nouns carry grammatical gender where adjectives agree with it (fr, es, de).
_SHAPE_WORDS = {
    "en": {s: (s, None) for s in SHAPES},
    "zh": {"circle": ("圆形", None), "square": ("正方形", None), "triangle": ("三角形", None),
           "diamond": ("菱形", None), "star": ("星形", None)},
    "fr": {"circle": ("cercle", "m"), "square": ("carré", "m"), "triangle": ("triangle", "m"),
           "diamond": ("losange", "m"), "star": ("étoile", "f")},
    "es": {"circle": ("círculo", "m"), "square": ("cuadrado", "m"), "triangle": ("triángulo", "m"),
           "diamond": ("rombo", "m"), "star": ("estrella", "f")},
    "de": {"circle": ("Kreis", "m"), "square": ("Quadrat", "n"), "triangle": ("Dreieck", "n"),
           "diamond": ("Raute", "f"), "star": ("Stern", "m")},
}
# colour adjective by gender (None = invariable, or a language without agreement)
_COLOR_WORDS = {
    "en": {c: {None: c} for c in COLORS},
    "zh": {"red": {None: "红色"}, "orange": {None: "橙色"}, "yellow": {None: "黄色"},
           "green": {None: "绿色"}, "blue": {None: "蓝色"}, "purple": {None: "紫色"}},
    "fr": {"red": {"m": "rouge", "f": "rouge"}, "orange": {"m": "orange", "f": "orange"},
           "yellow": {"m": "jaune", "f": "jaune"}, "green": {"m": "vert", "f": "verte"},
           "blue": {"m": "bleu", "f": "bleue"}, "purple": {"m": "violet", "f": "violette"}},
    "es": {"red": {"m": "rojo", "f": "roja"}, "orange": {"m": "naranja", "f": "naranja"},
           "yellow": {"m": "amarillo", "f": "amarilla"}, "green": {"m": "verde", "f": "verde"},
           "blue": {"m": "azul", "f": "azul"}, "purple": {"m": "morado", "f": "morada"}},
    # German adjectives without article (strong) and after "ein" (mixed) share these endings
    # in the nominative: -er (masc.), -es (neut.), -e (fem.)
    "de": {c: {g: stem + ending for g, ending in (("m", "er"), ("n", "es"), ("f", "e"))}
           for c, stem in (("red", "rot"), ("orange", "orangefarben"), ("yellow", "gelb"),
                           ("green", "grün"), ("blue", "blau"), ("purple", "violett"))},
}
_SIZE_WORDS = {
    "en": {"small": {None: "small"}, "large": {None: "large"}},
    "zh": {"small": {None: "小的"}, "large": {None: "大的"}},
    "fr": {"small": {"m": "petit", "f": "petite"}, "large": {"m": "grand", "f": "grande"}},
    "es": {"small": {"m": "pequeño", "f": "pequeña"}, "large": {"m": "grande", "f": "grande"}},
    "de": {"small": {"m": "kleiner", "n": "kleines", "f": "kleine"},
           "large": {"m": "großer", "n": "großes", "f": "große"}},
}
_ARTICLES = {
    "fr": {"m": "un", "f": "une"}, "es": {"m": "un", "f": "una"},
    "de": {"m": "ein", "n": "ein", "f": "eine"},
}
_AND = {"en": " and ", "zh": "和", "fr": " et ", "es": " y ", "de": " und "}


def _check(value, valid, what):
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; expected one of: {', '.join(valid)}")


def describe(color: str, shape: str, lang: str = "en", size: str | None = None,
             article: bool = False) -> str:
    """Name a coloured shape in ``lang``: ``"red circle"``, ``"红色圆形"``, ``"cercle rouge"``.

    ``size`` ("small" / "large") adds the size adjective; ``article=True`` gives the noun phrase
    used inside captions ("a red circle", "一个红色圆形", "une étoile rouge", "ein roter Kreis").
    Adjectives agree with the noun's gender in French, Spanish and German.
    """
    _check(color, COLORS, "colour")
    _check(shape, SHAPES, "shape")
    _check(lang, LANGUAGES, "language")
    if size is not None:
        _check(size, SIZES, "size")
    noun, gender = _SHAPE_WORDS[lang][shape]
    colour_word = _COLOR_WORDS[lang][color][gender]
    size_word = _SIZE_WORDS[lang][size][gender] if size else None

    if lang == "zh":
        phrase = (size_word or "") + colour_word + noun
        return ("一个" if article else "") + phrase
    if lang == "en":
        phrase = " ".join(w for w in (size_word, colour_word, noun) if w)
        return (("an " if phrase[0] in "aeiou" else "a ") + phrase) if article else phrase
    if lang == "fr":  # "un petit cercle rouge": size before the noun, colour after
        phrase = " ".join(w for w in (size_word, noun, colour_word) if w)
    elif lang == "es":  # "un círculo rojo pequeño": both adjectives after the noun
        phrase = " ".join(w for w in (noun, colour_word, size_word) if w)
    else:  # de: "ein kleiner roter Kreis"
        phrase = " ".join(w for w in (size_word, colour_word, noun) if w)
    return (_ARTICLES[lang][gender] + " " + phrase) if article else phrase


def class_labels(lang: str = "en") -> list[str]:
    """Zero-shot class labels, one per entry of ``CLASSES`` (colour x shape)."""
    return [describe(color, shape, lang) for color, shape in CLASSES]


def join_phrases(phrases: list[str], lang: str = "en") -> str:
    """Join noun phrases with the language's "and"."""
    _check(lang, LANGUAGES, "language")
    return _AND[lang].join(phrases)


# ---------------------------------------------------------------- scenes
@dataclass(frozen=True, eq=False)
class ShapeObject:
    """Ground truth for one object. ``box`` is ``(x0, y0, x1, y1)`` in pixels, ``x1``/``y1``
    exclusive (as ``PIL.Image.crop`` takes it), the tight box of ``mask`` (bool, ``[H, W]``)."""

    color: str
    shape: str
    size: str
    box: tuple[int, int, int, int]
    mask: np.ndarray

    def describe(self, lang: str = "en", size: bool = False, article: bool = False) -> str:
        return describe(self.color, self.shape, lang, self.size if size else None, article)


@dataclass(frozen=True, eq=False)
class Scene:
    """One image of the shapes world with its ground truth."""

    pixels: np.ndarray  # [H, W, 3] uint8
    objects: tuple[ShapeObject, ...]
    background: str

    @property
    def image(self) -> Image.Image:
        return Image.fromarray(self.pixels, mode="RGB")

    def caption(self, lang: str = "en", size: bool = True) -> str:
        """The whole scene in words: "a small red circle and a large blue square"."""
        return join_phrases([o.describe(lang, size=size, article=True) for o in self.objects], lang)

    def __repr__(self) -> str:
        return f"Scene({self.caption('en')!r} on {self.background})"


WORLDS = ("wide", "plain")


def check_request(n: int, objects: int) -> None:
    """The arguments every renderer's ``sample(n, seed, objects)`` takes: a clear error otherwise."""
    if objects not in (1, 2):
        raise ValueError(f"objects must be 1 or 2, got {objects!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n!r}")


def boxed_object(color: str, shape: str, size: str, cx: float, cy: float, r: float, width: int,
                 height: int) -> ShapeObject:
    """Ground truth for an object drawn by code that keeps no pixel mask (the evaluation renderers):
    its mask is the square of half-side ``r`` round ``(cx, cy)``, clipped to the canvas."""
    x0, y0 = max(0, int(cx - r)), max(0, int(cy - r))
    x1, y1 = min(width, math.ceil(cx + r)), min(height, math.ceil(cy + r))
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    mask.flags.writeable = False
    return ShapeObject(color, shape, size, (x0, y0, x1, y1), mask)


def sample(n: int, seed: int = 0, objects: int = 1, world: str = "plain") -> list[Scene]:
    """``n`` scenes with ``objects`` (1 or 2) objects each, deterministic in ``seed``.

    Scene ``i`` depends only on ``(seed, objects, i, world)``. Two objects never overlap and never
    have both the same colour and the same shape. ``world``: "plain" (default) or "wide" (see the
    module docstring).
    """
    check_request(n, objects)
    _check(world, WORLDS, "world")
    if world == "plain":
        return [_scene(np.random.default_rng([seed, objects, i]), objects) for i in range(n)]
    return [_wide_scene(np.random.default_rng([seed, objects, i, 1]), objects) for i in range(n)]


def sample_one(seed: int, objects: int, index: int, world: str = "plain") -> Scene:
    """Scene ``index`` of ``sample(index + 1, seed, objects, world)``, without drawing the others."""
    _check(world, WORLDS, "world")
    if world == "plain":
        return _scene(np.random.default_rng([seed, objects, index]), objects)
    return _wide_scene(np.random.default_rng([seed, objects, index, 1]), objects)


_YS, _XS = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE] + 0.5  # pixel centres
# a five-pointed star's vertices on the unit circle (outer 1, inner 0.45), rounded once so the
# rasterisation cannot depend on the platform's sin/cos in the last bit
_STAR = np.round([(r * np.sin(a), -r * np.cos(a))
                  for k in range(10) for r, a in [((1.0, 0.45)[k % 2], k * np.pi / 5)]], 6)


def _polygon_mask(vertices) -> np.ndarray:
    """Even-odd rule at every pixel centre."""
    inside = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=bool)
    for (x1, y1), (x2, y2) in zip(vertices, np.roll(vertices, -1, axis=0)):
        if y1 == y2:
            continue
        crosses = (y1 > _YS) != (y2 > _YS)
        x_at = x1 + (_YS - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (_XS < x_at)
    return inside


def _shape_mask(shape: str, x0: int, y0: int, side: int) -> np.ndarray:
    """The shape inscribed in the square box ``[x0, x0+side) x [y0, y0+side)``."""
    half = side / 2
    cx, cy = x0 + half, y0 + half
    if shape == "circle":
        return (_XS - cx) ** 2 + (_YS - cy) ** 2 <= half ** 2
    if shape == "square":
        return (np.abs(_XS - cx) <= half) & (np.abs(_YS - cy) <= half)
    if shape == "diamond":
        return np.abs(_XS - cx) + np.abs(_YS - cy) <= half
    if shape == "triangle":  # apex up
        return _polygon_mask(np.array([(cx, y0), (x0 + side, y0 + side), (x0, y0 + side)], float))
    if shape == "star":
        return _polygon_mask(_STAR * half + (cx, cy + 0.05 * side))  # nudge down: the star is top-heavy
    raise ValueError(f"unknown shape {shape!r}; expected one of: {', '.join(SHAPES)}")


def _boxes_apart(a, b) -> bool:
    return a[2] + _GAP <= b[0] or b[2] + _GAP <= a[0] or a[3] + _GAP <= b[1] or b[3] + _GAP <= a[1]


def _jittered(rgb, rng, amount) -> np.ndarray:
    return np.asarray(rgb, dtype=np.int16) + rng.integers(-amount, amount + 1, size=3)


def _scene(rng: np.random.Generator, n_objects: int) -> Scene:
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    canvas = np.broadcast_to(_jittered(_BACKGROUND_RGB[background], rng, _BACKGROUND_JITTER),
                             (IMAGE_SIZE, IMAGE_SIZE, 3)).copy()
    placed: list[ShapeObject] = []
    while len(placed) < n_objects:
        color = COLORS[rng.integers(len(COLORS))]
        shape = SHAPES[rng.integers(len(SHAPES))]
        size = SIZES[rng.integers(len(SIZES))]
        low, high = _SIDE_RANGE[size]
        side = int(rng.integers(low, high + 1))
        x0, y0 = (int(v) for v in rng.integers(_MARGIN, IMAGE_SIZE - _MARGIN - side + 1, size=2))
        if any((o.color, o.shape) == (color, shape) for o in placed):
            continue
        mask = _shape_mask(shape, x0, y0, side)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        if any(not _boxes_apart(box, o.box) for o in placed):
            continue  # resample: objects must not touch
        canvas[mask] = _jittered(_RGB[color], rng, _OBJECT_JITTER)
        mask.flags.writeable = False
        placed.append(ShapeObject(color, shape, size, box, mask))
    canvas += rng.integers(-_PIXEL_NOISE, _PIXEL_NOISE + 1, size=canvas.shape, dtype=np.int16)
    pixels = np.clip(canvas, 0, 255).astype(np.uint8)
    pixels.flags.writeable = False
    return Scene(pixels=pixels, objects=tuple(placed), background=background)


# ---------------------------------------------------------------- the wide world
# Hue ranges (degrees), saturation and value floors per named colour: wide enough to hold the
# shades a person calls by that name, apart enough that neighbours (red/orange/yellow) never meet.
_HSV_RANGE = {
    "red": ((-10, 8), 0.6, 0.55), "orange": ((22, 36), 0.7, 0.8), "yellow": ((48, 60), 0.6, 0.8),
    "green": ((95, 150), 0.5, 0.4), "blue": ((205, 245), 0.5, 0.45), "purple": ((265, 295), 0.45, 0.4),
}
_WIDE_SIDE = {"small": (10, 20), "large": (26, 58)}  # one object; two objects cap "large" at 34
_SUPERSAMPLE = 4


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    h = (h % 360) / 60
    c = v * s
    x = c * (1 - abs(h % 2 - 1))
    r, g, b = [(c, x, 0), (x, c, 0), (0, c, x), (0, x, c), (x, 0, c), (c, 0, x)][int(h) % 6]
    return np.round((np.array([r, g, b]) + v - c) * 255)


def _shade(color: str, rng: np.random.Generator) -> np.ndarray:
    (h0, h1), s_min, v_min = _HSV_RANGE[color]
    return _hsv_to_rgb(rng.uniform(h0, h1), rng.uniform(s_min, 1.0), rng.uniform(v_min, 1.0))


def _unit_inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Is ``(u, v)`` inside the shape inscribed in the square [-1, 1]^2 (y down)?"""
    if shape == "circle":
        return u * u + v * v <= 1
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 1
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1
    if shape == "triangle":  # apex up
        return (v <= 1) & (np.abs(u) <= (v + 1) / 2)
    star = np.vstack([_STAR[:, 0], _STAR[:, 1] + 0.05]).T
    inside = np.zeros(u.shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(star, np.roll(star, -1, axis=0)):
        crosses = (y1 > v) != (y2 > v)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x1 + (v - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (u < x_at)
    return inside


def _coverage(shape: str, width: int, height: int, centre, half: float, angle: float, stretch,
              wobble, outline: float | None, antialias: bool) -> np.ndarray:
    """``[height, width]`` fraction of each pixel the shape covers (0/1 without anti-aliasing)."""
    # only the window that can hold the shape is rasterised (wobble and stretch stay under 1.6x)
    reach = 1.6 * half * max(stretch)
    x0, x1 = max(0, int(centre[0] - reach)), min(width, int(np.ceil(centre[0] + reach)) + 1)
    y0, y1 = max(0, int(centre[1] - reach)), min(height, int(np.ceil(centre[1] + reach)) + 1)
    k = _SUPERSAMPLE if antialias else 1
    offsets = (np.arange(k) + 0.5) / k
    ys = (np.arange(y0, y1)[:, None] + offsets[None, :]).reshape(-1)
    xs = (np.arange(x0, x1)[:, None] + offsets[None, :]).reshape(-1)
    dx, dy = xs[None, :] - centre[0], ys[:, None] - centre[1]
    cos, sin = np.cos(angle), np.sin(angle)
    u = (cos * dx + sin * dy) / (half * stretch[0])
    v = (-sin * dx + cos * dy) / (half * stretch[1])
    phi = np.arctan2(v, u)
    # a hand-drawn outline: the radius breathes with a few low harmonics of the polar angle
    scale = 1 + sum(a * np.sin(j * phi + p) for j, a, p in wobble)
    u, v = u / scale, v / scale
    inside = _unit_inside(shape, u, v)
    if outline is not None:  # a stroke of `outline` pixels: the shape minus its shrunk copy
        shrink = max(0.05, 1 - outline / half)
        inside &= ~_unit_inside(shape, u / shrink, v / shrink)
    cover = np.zeros((height, width))
    cover[y0:y1, x0:x1] = inside.reshape(y1 - y0, k, x1 - x0, k).mean(axis=(1, 3))
    return cover


def _background(name: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    base = np.asarray(_BACKGROUND_RGB[name], float) + rng.integers(-12, 13, size=3)
    canvas = np.broadcast_to(base, (height, width, 3)).copy()
    ys, xs = np.mgrid[0:height, 0:width] / 64.0
    if rng.random() < 0.4:  # a linear gradient in a random direction
        a = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(a) * (xs - xs.mean()) + np.sin(a) * (ys - ys.mean())
        canvas += (ramp * rng.uniform(-70, 70))[..., None]
    texture = rng.random()
    if texture < 0.25:  # blotches: coarse noise, bilinearly upsampled
        grid = rng.normal(0, 1, size=(6, 6, 3)) * rng.uniform(5, 18)
        gy, gx = ys / ys.max() * 5 if height > 1 else ys, xs / xs.max() * 5
        y0, x0 = np.floor(gy).astype(int).clip(0, 4), np.floor(gx).astype(int).clip(0, 4)
        fy, fx = (gy - y0)[..., None], (gx - x0)[..., None]
        canvas += ((grid[y0, x0] * (1 - fx) + grid[y0, x0 + 1] * fx) * (1 - fy)
                   + (grid[y0 + 1, x0] * (1 - fx) + grid[y0 + 1, x0 + 1] * fx) * fy)
    elif texture < 0.4:  # stripes or a checkerboard, faint
        period = rng.uniform(4, 14)
        a = rng.uniform(0, np.pi)
        wave = np.sin((np.cos(a) * xs + np.sin(a) * ys) * 64 * 2 * np.pi / period)
        if rng.random() < 0.5:
            wave = np.sign(wave * np.sin((-np.sin(a) * xs + np.cos(a) * ys) * 64 * 2 * np.pi / period))
        canvas += (wave * rng.uniform(4, 14))[..., None]
    return canvas


def _blur(canvas: np.ndarray, sigma: float) -> np.ndarray:
    radius = int(np.ceil(2.5 * sigma))
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(canvas, ((radius, radius), (0, 0), (0, 0)), mode="edge")
    canvas = sum(w * padded[i:i + canvas.shape[0]] for i, w in enumerate(kernel))
    padded = np.pad(canvas, ((0, 0), (radius, radius), (0, 0)), mode="edge")
    return sum(w * padded[:, i:i + canvas.shape[1]] for i, w in enumerate(kernel))


def _jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    import io

    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="RGB").save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _wide_scene(rng: np.random.Generator, n_objects: int) -> Scene:
    width = height = IMAGE_SIZE
    if rng.random() < 0.2:  # non-square: the processor keeps the centre square, objects live there
        extra = 2 * int(rng.integers(4, 17))
        if rng.random() < 0.5:
            width += extra
        else:
            height += extra
    left, top = (width - IMAGE_SIZE) // 2, (height - IMAGE_SIZE) // 2
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    canvas = _background(background, width, height, rng)
    backdrop = np.asarray(_BACKGROUND_RGB[background], float)
    antialias = bool(rng.random() < 0.6)
    placed: list[ShapeObject] = []
    occupied = np.zeros((height, width), dtype=bool)
    discs: list[tuple] = []
    while len(placed) < n_objects:
        color = COLORS[rng.integers(len(COLORS))]
        shape = SHAPES[rng.integers(len(SHAPES))]
        size = SIZES[rng.integers(len(SIZES))]
        low, high = _WIDE_SIDE[size]
        if n_objects == 2 and size == "large":
            high = 34
        side = float(rng.uniform(low, high))
        # square and diamond are one shape turned by 45 degrees: keep their turns small
        limit = {"square": 15, "diamond": 15, "circle": 180, "triangle": 180, "star": 180}[shape]
        angle = np.deg2rad(rng.uniform(-limit, limit))
        stretch = (1.0, 1.0) if shape == "square" else tuple(rng.uniform(0.85, 1.15, size=2))
        wobble = ([(j, rng.uniform(0, 0.04), rng.uniform(0, 2 * np.pi)) for j in (2, 3, 5)]
                  if rng.random() < 0.35 else [])
        # radius of a circle that surely holds the shape (corners of a turned square reach sqrt 2)
        factor = max(stretch) * (1 + sum(a for _, a, _ in wobble)) * (1.42 if shape == "square" else 1.12)
        half = min(side / 2, (IMAGE_SIZE / 2 - 2) / factor)
        reach = half * factor
        outline = float(rng.uniform(2.0, max(2.5, half / 3))) if rng.random() < 0.25 else None
        rgb = _shade(color, rng)
        while np.abs(rgb - backdrop).sum() < 150:  # keep it visible on this background
            rgb = _shade(color, rng)
        cx = left + rng.uniform(reach + 1, IMAGE_SIZE - reach - 1)
        cy = top + rng.uniform(reach + 1, IMAGE_SIZE - reach - 1)
        if any((o.color, o.shape) == (color, shape) for o in placed):
            continue
        if any(np.hypot(cx - px, cy - py) < reach + pr + _GAP for px, py, pr in discs):
            continue  # resample: objects must not touch
        cover = _coverage(shape, width, height, (cx, cy), half, angle, stretch, wobble, outline, antialias)
        mask = cover >= 0.5
        if not mask.any():
            continue
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        if any(not _boxes_apart(box, o.box) for o in placed) or (occupied & (cover > 0)).any():
            continue
        discs.append((cx, cy, reach))
        occupied |= cover > 0
        canvas = canvas * (1 - cover[..., None]) + rgb * cover[..., None]
        mask.flags.writeable = False
        placed.append(ShapeObject(color, shape, size, box, mask))
    if rng.random() < 0.3:
        canvas = _blur(canvas, rng.uniform(0.4, 1.1))
    if rng.random() < 0.7:
        canvas += rng.normal(0, rng.uniform(1, 10), size=canvas.shape)
    pixels = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        pixels = _jpeg(pixels, int(rng.integers(25, 80)))
    pixels = np.ascontiguousarray(pixels)
    pixels.flags.writeable = False
    return Scene(pixels=pixels, objects=tuple(placed), background=background)
