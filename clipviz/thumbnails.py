"""Small previews of the map's points, made when first asked for and kept: an image row's thumbnail
(≤ 96 px, JPEG) or a text row's text, each as a ``data:`` URL a browser shows with no network.

Nothing is made up front: a map of 100,000 images costs nothing until a point is hovered, and each
preview is made once, then served from memory while it is among the most recently used (the cache
keeps at most ``max_bytes``, 64 MiB by default: about 10,000 photo previews, so hovering a whole
million-point map never fills the kernel's memory). The source is what the caller passed to
:func:`clipviz.embed` (``Embeddings.inputs``: a path, a PIL image, an array), else the small thumbnail
stored with the embeddings; an image that cannot be read gets a placeholder, never an exception.
"""

from __future__ import annotations

import base64
import html
import io
from collections import OrderedDict

import numpy as np

PREVIEW_SIDE = 96  # pixels, the longer side of an image preview
PREVIEW_CACHE_BYTES = 64 * 2**20
_JPEG_QUALITY = 80


class Previews:
    """``previews.url(row)`` → a ``data:`` URL for row ``row`` of an :class:`clipviz.embeddings.Embeddings`.

    ``side``: the longer side of an image preview in pixels (≤ 96 by default). ``max_bytes``: the
    most the kept previews may hold; the least recently shown go first. ``made`` counts the previews
    made so far (a row is made again only after it was dropped); ``failed`` lists rows whose image
    could not be read.
    """

    def __init__(self, embeddings, side: int = PREVIEW_SIDE, max_bytes: int = PREVIEW_CACHE_BYTES):
        if not 8 <= side <= 512:
            raise ValueError(f"side must be between 8 and 512 pixels, not {side!r}")
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be 0 or more, not {max_bytes!r}")
        self.embeddings = embeddings
        self.side = side
        self.max_bytes = max_bytes
        self._cache: OrderedDict[int, str] = OrderedDict()
        self._bytes = 0
        self.made = 0
        self.failed: list[int] = []

    def url(self, row: int) -> str:
        row = int(row)
        if not 0 <= row < len(self.embeddings):
            raise IndexError(f"there is no row {row}: choose 0 … {len(self.embeddings) - 1}")
        cached = self._cache.get(row)
        if cached is not None:
            self._cache.move_to_end(row)
            return cached
        made = self._make(row)
        self.made += 1
        self._cache[row] = made
        self._bytes += len(made)
        while self._bytes > self.max_bytes and self._cache:
            _, dropped = self._cache.popitem(last=False)
            self._bytes -= len(dropped)
        return made

    def nbytes(self) -> int:
        """Bytes held by the previews kept now (at most ``max_bytes``)."""
        return self._bytes

    def _make(self, row: int) -> str:
        emb = self.embeddings
        if emb.modality[row] != "image":
            return text_card(str(emb.sources[row]))
        image = None
        source = emb.inputs[row] if emb.inputs else None
        if source is not None:
            try:
                from .images import load_image

                image = load_image(source)
            except Exception:  # noqa: BLE001 - a moved or broken file: fall back, then a placeholder
                image = None
        if image is None:
            stored = emb.thumbnail(row)
            if stored is not None and np.asarray(stored).size:
                from PIL import Image

                image = Image.fromarray(np.asarray(stored, dtype=np.uint8))
        if image is None:
            self.failed.append(row)
            return placeholder("no preview")
        return jpeg_url(image, self.side)


def jpeg_url(image, side: int = PREVIEW_SIDE) -> str:
    """A PIL image shrunk to fit ``side`` × ``side`` as a JPEG ``data:`` URL."""
    image = image.convert("RGB")
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=_JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def text_card(text: str, width: int = 220, max_chars: int = 120) -> str:
    """A text shown as a small SVG card ``data:`` URL (the tooltip's preview slot shows images only)."""
    text = text if len(text) <= max_chars else text[: max_chars - 1] + "…"
    words, lines, line = text.split(), [], ""
    for word in words:
        if len(line) + len(word) + 1 > 30 and line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines = (lines + [line])[:4]
    height = 20 + 18 * len(lines)
    body = "".join(f'<text x="10" y="{24 + 18 * i}">{html.escape(part)}</text>' for i, part in enumerate(lines))
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
           f'<rect width="100%" height="100%" fill="#fff7e6"/><g font-family="sans-serif" font-size="14" '
           f'fill="#333">{body}</g></svg>')
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def placeholder(what: str = "no preview") -> str:
    """A grey square with ``what`` written on it, as an SVG ``data:`` URL."""
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{PREVIEW_SIDE}" height="{PREVIEW_SIDE}">'
           f'<rect width="100%" height="100%" fill="#ddd"/><text x="50%" y="50%" text-anchor="middle" '
           f'font-family="sans-serif" font-size="11" fill="#555">{html.escape(what)}</text></svg>')
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")
