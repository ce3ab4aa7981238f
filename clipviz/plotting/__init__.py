"""Matplotlib renderers: they take computed objects and ``ax=None`` and return the figure/axes.

Nothing here runs a model. One module per topic: ``zeroshot``, ``heatmaps``, ``embeddings``.
"""
