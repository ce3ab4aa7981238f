"""Training batches from the shapes world: normalised pixels, captions and which caption fits which image.

Seeds: training draws scenes from seeds >= ``TRAIN_SEED_BASE`` only, so any seed below it (the
tests use a few small ones) gives scenes no bundled model has seen.
"""

from __future__ import annotations

import numpy as np
import torch

from clipviz.data import shapes

TRAIN_SEED_BASE = 10**6
# CLIP's pixel statistics (the OPENAI_CLIP_MEAN/STD every family's image processor uses)
_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def train_seed(seed: int, stage: int, step: int) -> int:
    """The scene seed of one training step: disjoint per (seed, stage, step), always >= TRAIN_SEED_BASE."""
    return TRAIN_SEED_BASE * (1 + seed) + 100_000 * stage + step


def centre_crop(pixels: np.ndarray, size: int = shapes.IMAGE_SIZE) -> np.ndarray:
    """The processors' centre crop of a scene whose short side is already ``size`` (no resize)."""
    height, width = pixels.shape[:2]
    top, left = (height - size) // 2, (width - size) // 2
    return pixels[top:top + size, left:left + size]


def crops(scenes) -> torch.Tensor:
    """``[N, 3, 64, 64]`` uint8: what a processor keeps of each scene, before normalisation."""
    return torch.from_numpy(np.stack([centre_crop(s.pixels) for s in scenes])).permute(0, 3, 1, 2)


def normalise(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 ``[N, 3, H, W]`` -> the processors' normalised floats."""
    return (pixels.float() / 255.0 - _MEAN.to(pixels.device)) / _STD.to(pixels.device)


def pixel_values(scenes) -> torch.Tensor:
    """``[N, 3, 64, 64]`` float, exactly what the bundled processors produce for a scene whose short
    side is 64 (centre crop, no resize), computed without PIL so training is not slowed by it."""
    return normalise(crops(scenes))


# A mention is (colour, shape, size or None); a caption is a list of mentions in some language.
def scene_mentions(scene, rng: np.random.Generator, one_object: bool = False) -> list[tuple]:
    """What a caption of ``scene`` talks about: usually every object (random order), sometimes
    one of two, half the time with sizes. Mentioning one object of two teaches the model that
    "red circle" fits any scene containing a red circle (the present-vs-absent test).
    ``one_object=True``: captions always name a single object (a binding experiment)."""
    objects = list(scene.objects)
    rng.shuffle(objects)
    if len(objects) == 2 and (one_object or rng.random() < 0.25):
        objects = objects[:1]
    with_size = rng.random() < 0.5
    return [(o.color, o.shape, o.size if with_size else None) for o in objects]


def random_mentions(rng: np.random.Generator) -> list[tuple]:
    """Mentions without a scene (text-only distillation): one or two distinct objects."""
    count = 1 + int(rng.random() < 0.5)
    chosen = rng.choice(len(shapes.CLASSES), size=count, replace=False)
    with_size = rng.random() < 0.5
    return [(*shapes.CLASSES[k], shapes.SIZES[rng.integers(2)] if with_size else None) for k in chosen]


def render(mentions: list[tuple], lang: str, article: bool) -> str:
    """Put mentions into words: "red circle", "a small red circle and a blue star", "红色圆形"."""
    return shapes.join_phrases([shapes.describe(c, s, lang, size, article) for c, s, size in mentions], lang)


def caption_batch(mentions_list, languages, rng: np.random.Generator, shuffle_words: bool = False) -> list[str]:
    """One caption per mention list, each in a language drawn from ``languages``.

    ``shuffle_words=True`` puts each caption's words in random order ("circle a blue and red a
    square"): the text tower then cannot learn anything from word order, which makes it a bag of
    words (Yuksekgonul et al. 2023) while keeping architecture and data otherwise the same."""
    texts = [render(m, languages[rng.integers(len(languages))], bool(rng.random() < 0.5))
             for m in mentions_list]
    if shuffle_words:
        texts = [" ".join(rng.permutation(t.split(" "))) for t in texts]
    return texts


def swapped(mentions: list[tuple]) -> list[tuple] | None:
    """The attribute-swapped twin of a two-object mention list (colours exchanged), or None when
    there is none (one object, or both objects of one colour or one shape)."""
    if len(mentions) != 2:
        return None
    (c1, s1, z1), (c2, s2, z2) = mentions
    if c1 == c2 or s1 == s2:
        return None
    return [(c2, s1, z1), (c1, s2, z2)]


def match_matrix(scenes, mentions_list) -> torch.Tensor:
    """``[images, captions]`` 1.0 where everything a caption mentions is in the image.

    The shapes world has only 30 colour x shape classes, so a batch holds many captions that fit
    several images; treating them as negatives (plain InfoNCE) would punish right answers. The
    contrastive targets spread over all fitting pairs instead (multi-positive, as in supervised
    contrastive learning, Khosla et al. 2020).
    """
    # every mention a scene satisfies: each object with and without its size
    satisfied = [{(o.color, o.shape, size) for o in scene.objects for size in (None, o.size)}
                 for scene in scenes]
    return torch.tensor([[float(all(m in facts for m in mentions)) for mentions in mentions_list]
                         for facts in satisfied])


def contrastive_loss(logits_per_image: torch.Tensor, matches: torch.Tensor) -> torch.Tensor:
    """Symmetric cross-entropy of CLIP (Radford et al. 2021) with multi-positive targets.

    Captions that fit no image (hard negatives, as in NegCLIP, Yuksekgonul et al. 2023) only
    appear as negatives of the image-to-text direction."""
    image_targets = matches / matches.sum(dim=1, keepdim=True)
    fitting = matches.sum(dim=0) > 0
    text_targets = (matches[:, fitting] / matches[:, fitting].sum(dim=0, keepdim=True)).T
    image_loss = -(image_targets * logits_per_image.log_softmax(dim=1)).sum(dim=1).mean()
    text_loss = -(text_targets * logits_per_image.T[fitting].log_softmax(dim=1)).sum(dim=1).mean()
    return (image_loss + text_loss) / 2


def tokenizer_corpus(languages) -> list[str]:
    """Every phrase the shapes world can say in ``languages`` (to learn a vocabulary from)."""
    corpus = []
    for lang in languages:
        for color, shape in shapes.CLASSES:
            for size in (None, *shapes.SIZES):
                for article in (False, True):
                    corpus.append(shapes.describe(color, shape, lang, size, article))
        corpus.append(shapes.join_phrases(["x", "y"], lang))
    return corpus
