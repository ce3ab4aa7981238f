"""Wide scenes: two objects of the shapes world near the borders of a 2:1 canvas.

The processors of the CLIP families resize the short side and cut the centre square, so on a
128 × 64 canvas they keep only ``x`` in [32, 96): an object placed entirely left or right of that
band is invisible to the model in the default mode, and is exactly what
``clipviz.heatmap(..., resolution=...)`` (the whole image, no crop) is for.

Built only from the public API of :mod:`clipviz.data.shapes`: each wide scene takes the two objects
of a shapes scene (their pixels, through their masks) and its background pixels (resampled, so the
colour and noise match the world the bundled models were trained on), and places one object in the
left margin, the other in the right margin, at its original height.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from . import shapes

#: the shapes world's square side; a wide canvas is twice as wide
HEIGHT = 64
WIDTH = 2 * HEIGHT
EDGE = 2  # pixels kept free at the canvas border


@dataclass(frozen=True, eq=False)
class WideScene:
    """A 2:1 canvas, its two objects' ``(description, box)`` and the centre crop's x range."""

    pixels: np.ndarray  # [HEIGHT, WIDTH, 3] uint8
    objects: tuple[tuple[str, tuple[int, int, int, int]], ...]  # (english phrase with article, box)

    @property
    def image(self) -> Image.Image:
        return Image.fromarray(self.pixels, mode="RGB")

    @staticmethod
    def crop_band() -> tuple[int, int]:
        """The x range a centre crop of the short side keeps."""
        return (WIDTH - HEIGHT) // 2, (WIDTH + HEIGHT) // 2


def sample(n: int, seed: int = 0) -> list[WideScene]:
    """``n`` wide scenes, deterministic in ``seed``; every object lies outside the centre crop."""
    scenes = []
    low, high = WideScene.crop_band()
    for i, scene in enumerate(shapes.sample(n, seed=seed, objects=2)):
        rng = np.random.default_rng([seed, 2, i, 21])
        height, width = scene.pixels.shape[:2]
        if height != HEIGHT:
            raise ValueError(f"wide scenes expect {HEIGHT}-pixel shapes scenes, got {height}")
        occupied = np.zeros((height, width), dtype=bool)
        for obj in scene.objects:
            occupied |= obj.mask
        background = scene.pixels[~occupied]  # [n, 3]: the scene's own background, noise included
        canvas = background[rng.integers(len(background), size=HEIGHT * WIDTH)].reshape(HEIGHT, WIDTH, 3).copy()
        placed = []
        for obj, (start, stop) in zip(scene.objects, [(EDGE, low), (high, WIDTH - EDGE)]):
            x0, y0, x1, y1 = obj.box
            w = x1 - x0
            new_x0 = int(rng.integers(start, stop - w + 1))
            ys, xs = np.nonzero(obj.mask)
            canvas[ys, xs - x0 + new_x0] = scene.pixels[ys, xs]
            placed.append((obj.describe("en", article=True), (new_x0, y0, new_x0 + w, y1)))
        canvas.flags.writeable = False
        scenes.append(WideScene(canvas, tuple(placed)))
    return scenes


def queries(n: int, seed: int = 0) -> list[tuple[Image.Image, str, tuple[int, int, int, int]]]:
    """``[(image, text, box), ...]`` over ``n`` wide scenes, naming the left and the right object in turn."""
    return [(scene.image, *scene.objects[i % 2]) for i, scene in enumerate(sample(n, seed))]
