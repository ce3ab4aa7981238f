"""The bundled models: tiny CLIP, Chinese-CLIP and AltCLIP trained on the shapes world.

``clipviz.zoo.path("shapes-clip")`` gives the directory of a model saved in the standard
transformers format (load it with ``AutoModel.from_pretrained``). ``python -m clipviz.zoo.train``
retrains them. Nothing heavy is imported here.
"""

from __future__ import annotations

from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent / "models"
DEFAULT = "shapes-clip"
#: each family's bundled model, the name ``python -m clipviz.zoo.train --family F`` saves under
FAMILY_MODELS = {"clip": "shapes-clip", "chinese_clip": "shapes-chinese-clip", "altclip": "shapes-altclip"}


def available() -> list[str]:
    """Names of the bundled models present on disk, e.g. ``["shapes-altclip", ...]``."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(d.name for d in MODELS_DIR.iterdir() if (d / "config.json").is_file())


def path(name: str = DEFAULT) -> Path:
    """Directory of the bundled model ``name``; a ``ValueError`` listing the names otherwise."""
    directory = MODELS_DIR / str(name)
    if str(name) not in available():
        raise ValueError(f"no bundled model named {name!r}; available: {', '.join(available()) or 'none'}")
    return directory


__all__ = ["DEFAULT", "FAMILY_MODELS", "MODELS_DIR", "available", "path"]
