"""clipviz.plotting.encode: the one picture/figure → bytes helper."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from clipviz.plotting.encode import data_url, image_bytes

PNG = b"\x89PNG\r\n\x1a\n"


def test_every_kind_of_picture_becomes_the_same_png():
    pixels = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    from_array, from_image = image_bytes(pixels), image_bytes(Image.fromarray(pixels))
    assert from_array == from_image and from_array.startswith(PNG)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(from_array))), pixels)
    jpeg = image_bytes(pixels, "jpeg", quality=90)
    assert jpeg.startswith(b"\xff\xd8") and Image.open(io.BytesIO(jpeg)).size == (20, 12)
    url = data_url(pixels)
    assert url.startswith("data:image/png;base64,") and base64.b64decode(url.split(",", 1)[1]) == from_array


def test_figures_with_or_without_a_canvas():
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 1), dpi=50)
    figure.add_subplot().plot([0, 1], [1, 0])
    png = image_bytes(figure)
    assert png.startswith(PNG) and Image.open(io.BytesIO(png)).size == (100, 50)
    with pytest.raises(ValueError, match="png"):
        image_bytes(figure, "jpeg")
    with pytest.raises(TypeError, match="PIL image"):
        image_bytes("not a picture")
