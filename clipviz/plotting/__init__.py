"""Renderers: they take computed objects and ``ax=None`` and return the figure/axes (or bytes).

Nothing here runs a model. One module per topic: ``zeroshot``, ``heatmaps``, ``embeddings``; and
``encode``, the one place a picture or figure becomes PNG/JPEG bytes. Each loads on first use
(``clipviz.plotting.heatmaps.blend`` works after ``import clipviz``), so matplotlib is imported
only when something is drawn.
"""

from importlib import import_module
from importlib.util import find_spec


def __getattr__(name):
    if not name.startswith("_") and find_spec(f"{__name__}.{name}") is not None:
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'clipviz.plotting' has no attribute {name!r}")
