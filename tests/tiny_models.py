"""The unit tests' tiny random models: :func:`clipviz.testing.random_checkpoint` with its tiny towers.

(The builder lives in the package so the benchmarks use the same one without path edits.)
"""

from __future__ import annotations

from pathlib import Path

from clipviz.testing import CORPUS, FAMILIES, TINY_TEXT, TINY_VISION, random_checkpoint

VISION = TINY_VISION
TEXT = TINY_TEXT

__all__ = ["CORPUS", "FAMILIES", "TEXT", "VISION", "build_tiny"]


def build_tiny(family: str, directory: Path, *, context: int = 32, seed: int = 0) -> Path:
    """Save a tiny random ``family`` model and its processor into ``directory``."""
    return random_checkpoint(directory, family, context=context, seed=seed)
