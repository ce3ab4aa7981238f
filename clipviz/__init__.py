"""clipviz: see how CLIP, Chinese-CLIP and AltCLIP work, in notebooks.

The public API is small; everything else is reachable by module (``clipviz.heatmaps``, ...).
Heavy modules (torch, transformers, umap) load on first use, so ``import clipviz`` is quick.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "load": "clipviz.model",
    "HookedCLIP": "clipviz.model",
    "ActivationCache": "clipviz.cache",
    "heatmap": "clipviz.heatmaps",
    "embed": "clipviz.embeddings",
    "JointUMAP": "clipviz.projection",
    "modality_gap": "clipviz.projection",
    "decompose": "clipviz.inside.decomposition",
    "patch": "clipviz.inside.patching",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value  # resolve once
        return value
    raise AttributeError(f"module 'clipviz' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
