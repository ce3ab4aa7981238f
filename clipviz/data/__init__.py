"""Data for clipviz: the synthetic shapes world (``clipviz.data.shapes``)."""

from clipviz.data import shapes

__all__ = ["shapes"]
