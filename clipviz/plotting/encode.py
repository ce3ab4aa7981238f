"""Pictures as bytes: the one place clipviz turns an image or a figure into PNG (or JPEG) bytes.

Used by the result objects' ``_repr_html_`` (inline ``data:`` URLs: no files, no CDN) and by the
widget apps (``ipywidgets.Image`` values).
"""

from __future__ import annotations

import base64
import io

import numpy as np


def image_bytes(picture, format: str = "png", **save_options) -> bytes:
    """``picture`` encoded as ``format`` (``"png"`` or ``"jpeg"``).

    ``picture``: a PIL image, a uint8 ``[H, W, 3]`` (or ``[H, W]``) array, or a matplotlib figure
    (drawn on its own canvas, Agg if it has none). ``save_options`` go to PIL's ``save``
    (e.g. ``quality=92`` for JPEG).
    """
    format = format.lower()
    buffer = io.BytesIO()
    if hasattr(picture, "savefig"):  # a matplotlib Figure
        if format != "png":
            raise ValueError(f"figures are encoded as png, not {format!r}")
        canvas = picture.canvas
        if not hasattr(canvas, "print_png"):
            from matplotlib.backends.backend_agg import FigureCanvasAgg

            canvas = FigureCanvasAgg(picture)
        canvas.print_png(buffer)
        return buffer.getvalue()
    from PIL import Image

    if isinstance(picture, np.ndarray):
        picture = Image.fromarray(picture)
    if not isinstance(picture, Image.Image):
        raise TypeError(f"expected a PIL image, a uint8 array or a matplotlib figure, got {type(picture).__name__}")
    picture.save(buffer, format="JPEG" if format in ("jpeg", "jpg") else format.upper(), **save_options)
    return buffer.getvalue()


def data_url(picture, format: str = "png", **save_options) -> str:
    """``data:image/...;base64,...`` of :func:`image_bytes` (for inline HTML)."""
    mime = "jpeg" if format.lower() in ("jpeg", "jpg") else format.lower()
    encoded = base64.b64encode(image_bytes(picture, format, **save_options)).decode("ascii")
    return f"data:image/{mime};base64,{encoded}"
