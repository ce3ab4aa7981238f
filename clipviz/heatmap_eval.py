"""How good is a heatmap? Localisation against ground truth, and faithfulness to the model.

Localisation (needs a box around the object the text names):

- :func:`pointing_game` — Zhang et al. 2016 ("Top-down neural attention by excitation
  backprop", ECCV): a hit when the map's maximum lies inside the box (optionally within
  ``tolerance`` pixels of it).
- :func:`energy_in_box` — the share of the map's total (on the original image, [0, 1]-scaled as
  ``Heatmap.grid`` is) that falls inside the box (Wang et al. 2020, "Score-CAM", CVPR workshops).

Faithfulness (needs only the model): Petsiuk, Das & Saenko 2018 ("RISE: randomized input
sampling for explanation of black-box models", BMVC) deletion and insertion curves.
Deletion replaces the most important patches first with the processor's mean colour (zero after
normalisation) and follows the image–text logit down: a faithful map makes it fall fast (low
area under the curve). Insertion starts from a blurred image and puts the most important patches
back first: a faithful map makes the logit rise fast (high area). Both work on the crop the model
sees, one patch grid cell at a time, and report a random-order curve as the baseline.

Ground truth for faithfulness on the shapes world: :func:`erase_object` paints one object over,
so the logit before and after says which object the match depends on, whatever a map shows.

:func:`evaluate_on_shapes` runs pointing game and energy-in-box over two-object scenes of the
shapes world with the text naming one object, on scene seeds never used in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from .heatmaps import HEATMAP_METHODS, Heatmap, heatmap, method_record

#: shapes-world scene seed for held-out evaluation (training uses seeds >= 1,000,000)
HELDOUT_SEED = 5


def _check_box(box):
    if len(box) != 4:
        raise ValueError(f"a box is (x0, y0, x1, y1) in original-image pixels; got {box!r}")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"the box {box!r} is empty: need x1 > x0 and y1 > y0")
    return x0, y0, x1, y1


def box_mask(box, size: tuple[int, int]) -> np.ndarray:
    """Boolean ``[H, W]`` of the pixels whose centres lie in ``box`` = (x0, y0, x1, y1), x1/y1 exclusive."""
    width, height = size
    x0, y0, x1, y1 = box
    xs, ys = np.arange(width) + 0.5, np.arange(height) + 0.5
    return ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]


def pointing_game(heatmap_: Heatmap, box, tolerance: float = 0.0) -> bool:
    """True when the maximum of ``heatmap_.image_map`` lies in ``box`` (grown by ``tolerance`` pixels).

    ``box`` is (x0, y0, x1, y1) in original-image pixels, x1/y1 exclusive (as the shapes world and
    ``PIL.Image.crop`` give it). Ties go to the first maximum in row-major order.
    """
    x0, y0, x1, y1 = _check_box(box)
    x, y = heatmap_.peak
    cx, cy = x + 0.5, y + 0.5  # the pixel's centre
    return bool(x0 - tolerance <= cx < x1 + tolerance and y0 - tolerance <= cy < y1 + tolerance)


def energy_in_box(heatmap_: Heatmap, box) -> float:
    """Share of the map's total inside ``box`` (0..1); NaN pixels (outside the crop) count for nothing."""
    _check_box(box)
    values = np.nan_to_num(heatmap_.image_map, nan=0.0)
    total = values.sum()
    if total <= 0:
        return 0.0
    return float(values[box_mask(box, heatmap_.image.size)].sum() / total)


# ------------------------------------------------------------------------------ faithfulness
@dataclass(eq=False)
class FaithfulnessCurve:
    """Logit against the fraction of patches removed (deletion) or inserted (insertion).

    ``fractions``/``scores``: the curve following the heatmap's order; ``random_scores``: the same
    with a random patch order (``random_state``), a baseline measured in the same run. ``auc`` and
    ``random_auc``: trapezoidal areas over fractions 0..1, in logit units.
    """

    kind: str
    fractions: np.ndarray
    scores: np.ndarray
    random_scores: np.ndarray

    @property
    def auc(self) -> float:
        return float(np.trapezoid(self.scores, self.fractions))

    @property
    def random_auc(self) -> float:
        return float(np.trapezoid(self.random_scores, self.fractions))

    def plot(self, ax=None):
        from .plotting.heatmaps import plot_faithfulness

        return plot_faithfulness(self, ax=ax)

    def __repr__(self) -> str:
        return (f"FaithfulnessCurve({self.kind}, auc={self.auc:.3f}, random_auc={self.random_auc:.3f}, "
                f"steps={len(self.fractions)})")


def _blurred(pixels: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``[N, 3, S, S]`` (separable, reflect padding), as RISE's insertion canvas."""
    radius = max(1, int(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=pixels.dtype, device=pixels.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = pixels.shape[1]
    padded = torch.nn.functional.pad(pixels, (radius, radius, radius, radius), mode="reflect")
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    out = torch.nn.functional.conv2d(padded, horizontal, groups=channels)
    return torch.nn.functional.conv2d(out, vertical, groups=channels)


def _patch_masks(order: np.ndarray, steps: np.ndarray, grid: tuple[int, int], patch: int) -> torch.Tensor:
    """``[len(steps), 1, S, S]``: 1 where the first ``steps[k]`` patches of ``order`` are selected."""
    gh, gw = grid
    masks = np.zeros((len(steps), gh * gw), dtype=np.float32)
    for k, count in enumerate(steps):
        masks[k, order[:count]] = 1.0
    masks = masks.reshape(len(steps), 1, gh, gw)
    return torch.from_numpy(masks).repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)


def _curve_scores(model, pixels, start, end, order, steps, text_embed, batch_size) -> np.ndarray:
    """Logits of images that take ``end`` where the first ``steps[k]`` patches of ``order`` are, else ``start``."""
    side = pixels.shape[-1]
    gh, gw = model.grid_size
    patch = side // gh
    masks = _patch_masks(order, steps, (gh, gw), patch).to(pixels.device, pixels.dtype)
    scores = []
    with torch.no_grad():
        for i in range(0, len(steps), batch_size):
            m = masks[i : i + batch_size]
            batch = start * (1 - m) + end * m
            scores.append(model.logit_scale * (model.image_features(batch) @ text_embed.t())[:, 0])
    return torch.cat(scores).float().cpu().numpy()


def faithfulness_curve(model, heatmap_: Heatmap, text: str | None = None, kind: str = "deletion", *,
                       steps: int | None = None, blur_sigma: float | None = None, batch_size: int = 64,
                       random_state: int = 0) -> FaithfulnessCurve:
    """Deletion or insertion curve (Petsiuk et al. 2018) of ``heatmap_`` for ``model`` and ``text``.

    ``text`` defaults to the heatmap's own text (needed for attention/rollout maps). ``steps``:
    number of points after 0 (default: one per patch). Deletion fills removed patches with the
    mean colour; insertion starts from the crop blurred with ``blur_sigma`` (default: one patch).
    """
    if kind not in ("deletion", "insertion"):
        raise ValueError(f"kind must be 'deletion' or 'insertion', not {kind!r}")
    text = text if text is not None else heatmap_.text
    if text is None:
        raise ValueError("this heatmap has no text: pass text= (the curves follow the image–text logit)")
    if tuple(heatmap_.grid.shape) != tuple(model.grid_size):
        raise ValueError(f"the heatmap's grid {heatmap_.grid.shape} is not this model's patch grid {model.grid_size}")
    pixels = model.pixel_values([heatmap_.image])
    n_patches = heatmap_.grid.size
    counts = np.unique(np.round(np.linspace(0, n_patches, (steps or n_patches) + 1)).astype(int))
    with torch.no_grad():
        text_embed = model.text_features(model.tokenize([text]))
    order = np.argsort(-heatmap_.grid.ravel(), kind="stable")
    random_order = np.random.default_rng(random_state).permutation(n_patches)
    if kind == "deletion":
        start, end = pixels, torch.zeros_like(pixels)
    else:
        sigma = blur_sigma if blur_sigma is not None else float(model.patch_size)
        start, end = _blurred(pixels, sigma), pixels
    scores = _curve_scores(model, pixels, start, end, order, counts, text_embed, batch_size)
    random_scores = _curve_scores(model, pixels, start, end, random_order, counts, text_embed, batch_size)
    return FaithfulnessCurve(kind, counts / n_patches, scores, random_scores)


def deletion_curve(model, heatmap_: Heatmap, text: str | None = None, **options) -> FaithfulnessCurve:
    """Deletion curve (Petsiuk et al. 2018): most important patches removed first; lower AUC = more faithful."""
    return faithfulness_curve(model, heatmap_, text, "deletion", **options)


def insertion_curve(model, heatmap_: Heatmap, text: str | None = None, **options) -> FaithfulnessCurve:
    """Insertion curve (Petsiuk et al. 2018): most important patches inserted first; higher AUC = more faithful."""
    return faithfulness_curve(model, heatmap_, text, "insertion", **options)


# ------------------------------------------------------------------------------ shapes world
@dataclass
class LocalisationScore:
    """Pointing game hit rate and mean energy-in-box of one method on one model."""

    model: str
    method: str
    options: dict
    n: int
    pointing: float
    energy: float

    def __repr__(self) -> str:
        return (f"LocalisationScore({self.model}, {self.method}, n={self.n}, pointing={self.pointing:.1%}, "
                f"energy={self.energy:.1%})")


def erase_object(scene, obj) -> Image.Image:
    """``scene``'s image with ``obj`` painted over in the background colour (the median border pixel).

    The model's own answer to "which object does this match depend on": compare the image–text
    logit before and after (an object-level occlusion, Zeiler & Fergus 2014, with the ground-truth mask).
    """
    pixels = scene.pixels.copy()
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    pixels[obj.mask] = np.median(border, axis=0).astype(np.uint8)
    return Image.fromarray(pixels)


def erasure_drops(model, scene, text: str, objects) -> list[float]:
    """How much the image–text logit of ``scene`` and ``text`` falls when each of ``objects`` is
    erased (:func:`erase_object`): positive, the match needs that object. One batched model run."""
    images = [scene.image] + [erase_object(scene, obj) for obj in objects]
    logits = model.logits(images, [text])[:, 0].tolist()
    return [logits[0] - erased for erased in logits[1:]]


def named_objects(n: int = 200, seed: int = HELDOUT_SEED):
    """``n`` held-out two-object shapes scenes, each with the object its query names and the other
    one: ``[(scene, named, other), ...]``. The named object alternates between the first and the
    second of each scene (what :func:`shapes_queries` asks about)."""
    from .data import shapes

    return [(scene, scene.objects[i % 2], scene.objects[1 - i % 2])
            for i, scene in enumerate(shapes.sample(n, seed=seed, objects=2))]


def shapes_queries(n: int = 200, seed: int = HELDOUT_SEED, lang: str = "en"):
    """``n`` two-object shapes scenes, each with one object named: ``[(image, text, box), ...]``.

    The named object alternates between the first and the second of each scene (:func:`named_objects`).
    """
    return [(scene.image, named.describe(lang, article=True), named.box) for scene, named, _ in named_objects(n, seed)]


def evaluate_localisation(model, queries, method: str = "relevance", **options) -> LocalisationScore:
    """Pointing game and energy-in-box of ``method`` over ``queries`` = [(image, text, box), ...].

    Methods that do not read the text (``HEATMAP_METHODS[method].needs_text`` false) get none.
    """
    needs_text = method_record(method).needs_text
    hits, energies = [], []
    for image, text, box in queries:
        hm = heatmap(model, image, text if needs_text else None, method=method, **options)
        hits.append(pointing_game(hm, box))
        energies.append(energy_in_box(hm, box))
    return LocalisationScore(model.name, method, options, len(queries), float(np.mean(hits)), float(np.mean(energies)))


def evaluate_on_shapes(model, methods=None, n: int = 200, seed: int = HELDOUT_SEED,
                       lang: str = "en") -> list[LocalisationScore]:
    """Pointing game and energy-in-box of each method (default options) on held-out two-object scenes.

    ``methods``: names from ``clipviz.heatmaps.HEATMAP_METHODS`` (default: all of them).
    """
    methods = tuple(HEATMAP_METHODS) if methods is None else methods
    queries = shapes_queries(n, seed, lang)
    return [evaluate_localisation(model, queries, method) for method in methods]
