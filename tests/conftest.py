import os

# Read by huggingface_hub at import time: set before anything imports it.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("MPLBACKEND", "Agg")

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import FAMILIES, build_tiny  # noqa: E402


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """{family: directory of a saved tiny random model with its processor}."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {family: build_tiny(family, root / family) for family in FAMILIES}


@pytest.fixture(scope="session")
def tiny_hooked(tiny_models):
    """{family: HookedCLIP} over the tiny models, loaded once per session."""
    import clipviz

    return {family: clipviz.load(path) for family, path in tiny_models.items()}


@pytest.fixture(params=FAMILIES)
def family(request) -> str:
    return request.param


@pytest.fixture
def photos():
    """Three small non-square random RGB images (deterministic)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (40 + 6 * i, 52, 3), dtype=np.uint8)) for i in range(3)]


TEXTS = ["a photo of a red circle", "蓝色正方形", "a yellow star on the left"]


@pytest.fixture
def texts() -> list[str]:
    """Texts of different lengths (padding masks matter), in two scripts."""
    return list(TEXTS)
