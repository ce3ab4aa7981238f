"""clipviz: see how CLIP, Chinese-CLIP and AltCLIP work, in notebooks.

The public API is small; everything else is reachable by module, lazily: after ``import clipviz``,
``clipviz.widgets.ZeroShotApp``, ``clipviz.heatmaps.HEATMAP_METHODS``, ``clipviz.zoo.path(...)``
work without further imports. Heavy modules (torch, transformers, umap, ipywidgets) load on first
use, so ``import clipviz`` is quick.

The verb rule
-------------
* **Methods of** :class:`HookedCLIP` are what the model does to inputs: encode
  (``model.image_embeds``, ``model.text_embeds``), score (``model.logits``), run and capture
  (``model.run_with_cache``, ``model.hooks``) — and ``model.classify``, the one analysis that is a
  single question put to the model.
* **Functions of** ``clipviz`` are analyses that take the model as their first argument and return
  a result object: ``clipviz.heatmap(model, image, text)``, ``clipviz.embed(model, images=...)``,
  ``clipviz.classify(model, images, labels)``, ``clipviz.compare([...], images, labels)``.
* Where both read naturally (classification), both exist and the method calls the function, so
  they never disagree.

``model.image_embeds`` (and ``HookedCLIP.image_features`` on pixel values) return **unit-norm**
vectors, unlike transformers' ``get_image_features``, which returns the raw projection.
"""

from importlib import import_module
from importlib.util import find_spec

__version__ = "0.1.0"

_EXPORTS = {
    "load": "clipviz.model",
    "HookedCLIP": "clipviz.model",
    "ActivationCache": "clipviz.cache",
    "heatmap": "clipviz.heatmaps",
    "embed": "clipviz.embeddings",
    "classify": "clipviz.zeroshot",
    "compare": "clipviz.zeroshot",
    "JointUMAP": "clipviz.projection",
    "JointLayout": "clipviz.projection",
    "modality_gap": "clipviz.projection",
    "decompose": "clipviz.inside.decomposition",
    "patch": "clipviz.inside.patching",
}

#: the documented submodules, reachable as ``clipviz.<name>`` without importing them first
SUBMODULES = (
    "cache", "data", "embeddings", "families", "heatmap_eval", "heatmaps", "hooks", "images", "loading",
    "model", "plotting", "projection", "testing", "widgets", "zeroshot", "zoo",
)

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value  # resolve once
        return value
    # any public submodule (the documented ones, and those added later), imported on first use
    if not name.startswith("_") and find_spec(f"{__name__}.{name}") is not None:
        return import_module(f"{__name__}.{name}")  # the import binds it on this package too
    raise AttributeError(f"module 'clipviz' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | set(SUBMODULES))
