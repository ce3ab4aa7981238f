"""Every image a user may have becomes an upright RGB image, or a clear error."""

import numpy as np
import pytest
from PIL import Image

from clipviz.images import CropGeometry, ImageLoadError, load_image, load_images


@pytest.mark.parametrize(
    "mode, pixel, expected",
    [
        ("L", 128, (128, 128, 128)),
        ("LA", (128, 255), (128, 128, 128)),
        ("LA", (0, 0), (255, 255, 255)),  # fully transparent -> white
        ("RGBA", (255, 0, 0, 255), (255, 0, 0)),
        ("RGBA", (255, 0, 0, 0), (255, 255, 255)),
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
        ("I;16", 65535, (255, 255, 255)),
        ("I;16", 32896, (128, 128, 128)),
        ("F", 255.0, (255, 255, 255)),
    ],
)
def test_modes_convert_to_rgb(mode, pixel, expected):
    image = load_image(Image.new(mode, (4, 3), pixel))
    assert image.mode == "RGB" and image.size == (4, 3)
    assert image.getpixel((1, 1)) == expected


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    image.info["transparency"] = 0
    path = tmp_path / "p.png"
    image.save(path, transparency=0)
    assert load_image(path).getpixel((0, 0)) == (0, 255, 0)
    assert load_image(Image.new("P", (2, 2), 0)).mode == "RGB"


def test_exif_rotated_photo_is_turned_upright(tmp_path):
    wide = Image.new("RGB", (40, 20), (255, 0, 0))
    wide.paste((0, 0, 255), (0, 0, 10, 20))  # blue on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view"
    path = tmp_path / "rotated.jpg"
    wide.save(path, exif=exif, quality=95)
    upright = load_image(path)
    assert upright.size == (20, 40)
    r, g, b = upright.getpixel((10, 3))  # the blue strip is now on top
    assert b > 200 and r < 60


def test_numpy_arrays():
    assert load_image(np.zeros((5, 6), dtype=np.uint8)).size == (6, 5)
    assert load_image(np.ones((5, 6, 3), dtype=np.float32)).getpixel((0, 0)) == (255, 255, 255)
    assert load_image(np.full((5, 6, 1), 65535, dtype=np.uint16)).getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(ImageLoadError, match="channels last"):
        load_image(np.zeros((3, 5, 6), dtype=np.uint8))
    with pytest.raises(ImageLoadError, match="NaN"):
        load_image(np.full((5, 6), np.nan))


def test_bad_files(tmp_path):
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "missing.png")
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    with pytest.raises(ImageLoadError, match="not an image"):
        load_image(text)
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(ImageLoadError, match="corrupt or truncated"):
        load_image(truncated)
    with pytest.raises(ImageLoadError, match="PIL.Image or a numpy array"):
        load_image(42)
    with pytest.raises(ImageLoadError, match="no images"):
        load_images([])


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("L", (300, 300)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300 * 300 // 4)  # > 2x the limit: Pillow raises
    with pytest.raises(ImageLoadError, match="safety limit"):
        load_image(path)


def test_model_rejects_unreadable_input(tiny_hooked, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(ImageLoadError, match="bad.jpg"):
        tiny_hooked["clip"].image_embeds([bad])


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (224, 224), (97, 401)])
def test_crop_geometry_matches_the_processor(tiny_models, size):
    """A bright square placed where the geometry says the crop is must fill the processed crop."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_models["clip"], backend="pil")
    geometry = CropGeometry.from_processor(processor, size)
    x0, y0, x1, y1 = geometry.crop_box
    image = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    image[int(np.ceil(y0)) : int(y1), int(np.ceil(x0)) : int(x1)] = 255
    pixels = processor.image_processor(images=Image.fromarray(image), return_tensors="np")["pixel_values"][0]
    inner = pixels[:, 2:-2, 2:-2]
    assert inner.min() > 1.5  # white after CLIP normalisation everywhere inside the crop
    grid = np.arange(16, dtype=float).reshape(4, 4)
    image_map = geometry.grid_to_image(grid)
    assert image_map.shape == (size[1], size[0])
    inside = image_map[~np.isnan(image_map)]
    assert inside.min() == 0 and inside.max() == 15
    assert np.isnan(image_map).any() == (size[0] != size[1])


def test_square_resize_geometry_squashes():
    """Chinese-CLIP's published processor resizes straight to a square (height/width size)."""
    from transformers import ChineseCLIPImageProcessorPil

    processor = ChineseCLIPImageProcessorPil(size={"height": 32, "width": 32}, do_center_crop=False)
    geometry = CropGeometry.from_processor(processor, (300, 100))
    assert geometry.crop_box == (0.0, 0.0, 300.0, 100.0)


def test_image_bytes_share_the_file_rules():
    import io

    from clipviz.images import load_image_bytes

    buffer = io.BytesIO()
    Image.new("LA", (3, 2), (0, 0)).save(buffer, format="PNG")
    assert load_image_bytes(buffer.getvalue(), "a.png").getpixel((0, 0)) == (255, 255, 255)
    with pytest.raises(ImageLoadError, match="“e.png” is empty"):
        load_image_bytes(b"", "e.png")
    with pytest.raises(ImageLoadError, match="“n.txt” is not an image file"):
        load_image_bytes(b"hello", "n.txt")
    noisy = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(noisy, format="PNG")
    with pytest.raises(ImageLoadError, match="corrupt or truncated"):
        load_image_bytes(noisy.getvalue()[:300], "t.png")
