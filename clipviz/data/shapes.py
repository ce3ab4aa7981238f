"""The shapes world: small synthetic scenes whose right answers are known.

Each scene is a 64 x 64 RGB image with one or two coloured shapes on a plain, slightly noisy
background, plus the ground truth of every object (colour, shape, size, pixel box, pixel mask) and
captions in several languages. With the bundled models' 8 x 8 pixel patches the image is an 8 x 8
patch grid, so heatmaps and zero-shot answers can be *checked* against the truth.

Determinism: every scene is drawn from its own ``numpy`` generator seeded with
``(seed, objects, index)``, and shapes are rasterised analytically in ``numpy`` (a pixel belongs to a
shape when its centre lies inside it; no anti-aliasing, no drawing library), so the same seed gives
the same bytes on any machine and ``sample(10, seed)[:5]`` equals ``sample(5, seed)``.

    >>> from clipviz.data import shapes
    >>> scene = shapes.sample(1, seed=0)[0]
    >>> scene.image.size
    (64, 64)
"""

from __future__ import annotations

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


def sample(n: int, seed: int = 0, objects: int = 1) -> list[Scene]:
    """``n`` scenes with ``objects`` (1 or 2) objects each, deterministic in ``seed``.

    Scene ``i`` depends only on ``(seed, objects, i)``. Two objects never overlap and never have
    both the same colour and the same shape.
    """
    if objects not in (1, 2):
        raise ValueError(f"objects must be 1 or 2, got {objects!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n!r}")
    return [_scene(np.random.default_rng([seed, objects, i]), objects) for i in range(n)]


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
