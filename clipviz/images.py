"""Image loading and the processor's geometry.

Loading turns whatever a user has (a path, a PIL image, a numpy array) into an upright RGB
``PIL.Image``: EXIF orientation applied, every Pillow mode converted the way a person would
expect (transparency onto white, 16-bit scaled, CMYK through Pillow's conversion), and
unreadable files reported by path with a hint.

``CropGeometry`` records exactly what a CLIP-family image processor does to an image (resize, then
centre crop) so that a map over the crop's patch grid can be put back onto the original photo.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InvalidArgument, MissingFile, WrongType

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# float arrays are read as 0..1; values this far outside are clipped without a word (resampling overshoot)
FLOAT_TOLERANCE = 0.1


class ImageLoadError(InvalidArgument):
    """An input could not be turned into an RGB image (a ``ValueError``)."""


class ImageFileNotFound(ImageLoadError, MissingFile):
    """An image path that does not exist (both a ``ValueError`` and a ``FileNotFoundError``)."""


class ImageTypeError(ImageLoadError, WrongType):
    """An object clipviz cannot read as an image (both a ``ValueError`` and a ``TypeError``)."""


_BYTES = (bytes, bytearray, memoryview)


def _is_file_like(source) -> bool:
    return callable(getattr(source, "read", None)) and not isinstance(source, (str, os.PathLike, Image.Image))


def load_image(source) -> Image.Image:
    """Return ``source`` as an upright RGB ``PIL.Image``.

    ``source`` may be a path (str or ``Path``) to a regular file, the bytes of an image file, an open
    binary file object, a ``PIL.Image`` or a numpy array (``[H, W]``, ``[H, W, 1|3|4]``; integers by
    value range — up to 255 as 8-bit, up to 65535 as 16-bit, like uint16 — or floats in [0, 1]).
    """
    if isinstance(source, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(source))
    if isinstance(source, (str, os.PathLike)):
        if not str(source).strip():  # Path("") would be the current directory
            raise ImageLoadError("images", "got an empty path '': pass the path of an image file")
        return _to_rgb(_open_path(Path(source)))
    if isinstance(source, np.ndarray):
        return _to_rgb(_from_array(source))
    if isinstance(source, _BYTES):
        return load_image_bytes(bytes(source), name=f"{len(source)} bytes")
    if _is_file_like(source):
        label = f"file object {getattr(source, 'name', type(source).__name__)!r}"
        return _to_rgb(_decode(source, label))
    hint = ""
    if type(source).__name__ == "Tensor":
        hint = (" (for a torch tensor [C, H, W] in 0..1 pass tensor.permute(1, 2, 0).numpy(); processed pixel values "
                "go to run_with_cache(pixel_values=...))")
    raise ImageTypeError(
        "images", f"cannot use an object of type {type(source).__name__} as an image: pass a file path, the bytes "
        f"of an image file, an open binary file, a PIL.Image or a numpy array of shape [H, W] or [H, W, C]{hint}"
    )


def load_images(sources) -> list[Image.Image]:
    """``load_image`` over one source or a list of them; always returns a list."""
    images = [load_image(s) for s in as_list(sources)]
    if not images:
        raise ImageLoadError("images", "no images were given: pass at least one image, path or array")
    return images


def image_files(folder) -> list[Path]:
    """Image files under ``folder`` (recursively), sorted, by suffix."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageLoadError("images", f"{folder} is not a directory")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def load_image_bytes(content: bytes, name: str = "upload") -> Image.Image:
    """The bytes of an image file (e.g. an upload) as an upright RGB image; ``name`` labels errors."""
    label = f"“{name}”"
    if not content:
        raise ImageLoadError(f"{label} is empty (0 bytes): upload an image file (PNG, JPEG, …)")
    hint = ": upload a PNG, JPEG, GIF, BMP, TIFF or WebP file"
    return _to_rgb(_decode(io.BytesIO(content), label, hint))


def _open_path(path: Path) -> Image.Image:
    path = path.expanduser()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ImageFileNotFound("images", f"image file not found: {path}") from None
    except OSError as error:
        raise ImageLoadError("images", f"cannot read {path}: {error.strerror or error}") from error
    if stat.S_ISDIR(mode):
        raise ImageLoadError("images", f"{path} is a directory, not an image file: pass the files "
                                       "(clipviz.images.image_files(folder) lists them)")
    if not stat.S_ISREG(mode):
        # a FIFO, socket or device would block or stream forever: only regular files are opened
        kind = "FIFO (named pipe)" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode) else "device"
        raise ImageLoadError("images", f"{path} is a {kind}, not a regular file: clipviz opens only image files; "
                                       "read the stream yourself and pass its bytes or an open file object")
    return _decode(path, str(path))


def _decode(source, label: str, hint: str = "") -> Image.Image:
    """Open and fully decode ``source`` (a path or file object), EXIF-upright; errors name ``label``."""
    try:
        with Image.open(source) as image:
            image.load()  # decode now, inside the try, so truncated files fail here
            return ImageOps.exif_transpose(image)
    except Image.DecompressionBombError as error:
        raise ImageLoadError(
            f"{label} is larger than Pillow's safety limit ({Image.MAX_IMAGE_PIXELS:,} pixels): {error}. "
            "Downscale it first, or raise PIL.Image.MAX_IMAGE_PIXELS if you trust the file."
        ) from error
    except UnidentifiedImageError as error:
        raise ImageLoadError(f"{label} is not an image file Pillow can read{hint}") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageLoadError(f"{label} could not be decoded (corrupt or truncated?): {error}") from error


def _from_array(array: np.ndarray) -> Image.Image:
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        hint = ""
        if array.ndim == 3 and array.shape[0] in (1, 3, 4):
            hint = ": it looks channels-first, pass array.transpose(1, 2, 0)"
        elif array.ndim == 4:
            hint = ": for a batch [N, H, W, C] pass list(array)"
        raise ImageLoadError(
            "images", f"an image array must have shape [H, W], [H, W, 3] or [H, W, 4] (channels last); got {array.shape}{hint}"
        )
    if array.size == 0:
        raise ImageLoadError("images", f"the image array is empty (shape {array.shape})")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageLoadError("images", "the image array contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < -FLOAT_TOLERANCE or high > 1 + FLOAT_TOLERANCE:
            hint = (" — it looks like 0..255 data: divide by 255, or pass it as uint8" if high > 2 and low >= 0
                    else " — it looks normalised (mean/std): pass the image before normalisation")
            raise ImageLoadError(
                "images", f"a float image array must hold values in [0, 1]; this one spans [{low:.3g}, {high:.3g}]{hint}"
            )
        array = np.clip(array, 0.0, 1.0) * 255.0 + 0.5
    elif array.dtype == np.bool_:
        array = array * 255
    elif np.issubdtype(array.dtype, np.integer):
        array = _scale_integers(array)
    else:
        raise ImageLoadError("images", f"unsupported image array dtype {array.dtype}: pass uint8, uint16 or floats in [0, 1]")
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def _scale_integers(array: np.ndarray) -> np.ndarray:
    """Integer pixels to 0..255 by their range: uint16 and any integers above 255 as 16-bit (÷257).

    Any integer dtype holding the same values gives the same picture (an int32 array of 12-bit data
    looks as the same data in uint16 does: dark, as a 16-bit viewer shows it).
    """
    low, high = int(array.min()), int(array.max())
    if low < 0:
        raise ImageLoadError("images", f"the {array.dtype} image array has negative values (min {low}): pixels are 0..255 "
                                       "(8-bit) or 0..65535 (16-bit)")
    if high > 65535:
        raise ImageLoadError("images", f"the {array.dtype} image array has values up to {high}, beyond 16 bits: scale it "
                                       "to 0..255 (uint8) or to floats in [0, 1]")
    if array.dtype == np.uint16 or high > 255:
        return array / 257.0 + 0.5
    return array


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB the way a person looking at the image would."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        return Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        # Transparent pixels have arbitrary colours underneath; show them as white, like a viewer does.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


@dataclass(frozen=True)
class CropGeometry:
    """Where the processor's square crop lies in the original (upright) image.

    ``resized`` is the (width, height) after the processor's resize, ``crop_box`` the crop in
    *original* pixel coordinates as floats (x0, y0, x1, y1).
    """

    original_size: tuple[int, int]
    resized_size: tuple[int, int]
    crop_size: tuple[int, int]
    crop_box: tuple[float, float, float, float]

    @classmethod
    def from_processor(cls, processor, original_size: tuple[int, int]) -> CropGeometry:
        """Geometry of ``processor`` (or its ``image_processor``) applied to a ``(W, H)`` image."""
        from transformers.image_transforms import get_resize_output_image_size

        ip = getattr(processor, "image_processor", processor)
        width, height = original_size
        size = dict(ip.size) if ip.do_resize else {}
        if not ip.do_resize:
            new_h, new_w = height, width
        elif size.get("shortest_edge"):
            dummy = np.zeros((1, height, width), dtype=np.uint8)  # shape only; channels first
            new_h, new_w = get_resize_output_image_size(
                dummy, size=size["shortest_edge"], default_to_square=False, input_data_format="channels_first"
            )
        elif size.get("height") and size.get("width"):
            new_h, new_w = size["height"], size["width"]  # Chinese-CLIP squashes to a square
        else:
            raise ValueError(f"clipviz does not know this processor's resize rule: size={size}")
        if ip.do_center_crop:
            crop_h, crop_w = ip.crop_size["height"], ip.crop_size["width"]
        else:
            crop_h, crop_w = new_h, new_w
        top, left = (new_h - crop_h) // 2, (new_w - crop_w) // 2
        sx, sy = width / new_w, height / new_h
        box = (left * sx, top * sy, (left + crop_w) * sx, (top + crop_h) * sy)
        return cls((width, height), (new_w, new_h), (crop_w, crop_h), box)

    @classmethod
    def whole_image(cls, original_size: tuple[int, int], resized_size: tuple[int, int]) -> CropGeometry:
        """Geometry of the any-resolution mode: the whole image resized to ``resized_size``, no crop."""
        width, height = original_size
        return cls((width, height), tuple(resized_size), tuple(resized_size), (0.0, 0.0, float(width), float(height)))

    def grid_to_image(self, grid: np.ndarray) -> np.ndarray:
        """Map a ``[h, w]`` grid over the crop onto the original image: ``[H, W]``, NaN outside the crop.

        Each grid cell covers an equal part of the crop; values are bilinearly interpolated between
        cell centres (edges clamp), evaluated at the centre of every original pixel.
        """
        grid = np.asarray(grid, dtype=np.float64)
        if grid.ndim != 2:
            raise ValueError(f"grid must be 2-D [h, w], got shape {grid.shape}")
        width, height = self.original_size
        x0, y0, x1, y1 = self.crop_box
        xs = (np.arange(width) + 0.5 - x0) / (x1 - x0)  # 0..1 across the crop
        ys = (np.arange(height) + 0.5 - y0) / (y1 - y0)
        rows = _interpolate_axis(grid, ys, axis=0)
        image_map = _interpolate_axis(rows, xs, axis=1)
        outside = (ys < 0) | (ys > 1)
        image_map[outside, :] = np.nan
        image_map[:, (xs < 0) | (xs > 1)] = np.nan
        return image_map


def whole_image_size(original_size: tuple[int, int], resolution, patch_size: int) -> tuple[int, int]:
    """``(width, height)`` for running a ViT on a whole ``original_size`` image at ``resolution``.

    ``resolution`` is the short side in pixels (an int; the long side follows the aspect ratio) or an
    explicit ``(width, height)``. Each side is rounded to the nearest multiple of ``patch_size`` (at
    least one patch), so the aspect ratio may move by up to half a patch; the geometry records the
    exact resize, so the map still lands on the right pixels.
    """
    width, height = original_size
    if isinstance(resolution, (tuple, list)) and len(resolution) == 2:
        target_w, target_h = (float(v) for v in resolution)
    elif isinstance(resolution, (int, np.integer)) and not isinstance(resolution, bool):
        scale = float(resolution) / min(width, height)
        target_w, target_h = width * scale, height * scale
    else:
        raise TypeError(
            f"resolution must be an int (the short side in pixels) or a (width, height) pair, not {resolution!r}"
        )
    if min(target_w, target_h) <= 0:
        raise ValueError(f"resolution must be positive, got {resolution!r}")
    return (
        max(patch_size, round(target_w / patch_size) * patch_size),
        max(patch_size, round(target_h / patch_size) * patch_size),
    )


def whole_image_pixels(processor, images: Sequence[Image.Image], resolution, patch_size: int):
    """``pixel_values`` ``[N, 3, h, w]`` of whole images (no centre crop) resized to ``resolution``.

    The resize uses the processor's own resampling filter; rescaling and normalisation are the
    processor's. All images must come out at one size (same aspect ratio, or an explicit size).
    """
    ip = getattr(processor, "image_processor", processor)
    sizes = {whole_image_size(image.size, resolution, patch_size) for image in images}
    if len(sizes) > 1:
        raise ValueError(
            f"these images come out at {len(sizes)} different sizes at resolution={resolution!r} "
            f"({sorted(sizes)[:3]}...): pass images of one aspect ratio per call, or resolution=(width, height)"
        )
    size = sizes.pop()
    resample = getattr(ip, "resample", Image.BICUBIC)
    resized = [image.resize(size, resample=resample) for image in images]
    return ip(images=resized, do_resize=False, do_center_crop=False, return_tensors="pt")["pixel_values"]


def _interpolate_axis(values: np.ndarray, positions: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation along ``axis`` of cells centred at (i + 0.5) / n, edges clamped."""
    n = values.shape[axis]
    coords = np.clip(positions * n - 0.5, 0, n - 1)
    low = np.floor(coords).astype(int)
    high = np.minimum(low + 1, n - 1)
    frac = coords - low
    a, b = np.take(values, low, axis=axis), np.take(values, high, axis=axis)
    shape = [1, 1]
    shape[axis] = -1
    return a + (b - a) * frac.reshape(shape)


def as_list(sources) -> Sequence:
    """One image-like source or a sequence of them, as a list (without loading)."""
    if isinstance(sources, (str, os.PathLike, Image.Image, np.ndarray, *_BYTES)) or _is_file_like(sources):
        return [sources]
    if isinstance(sources, Iterable) and not isinstance(sources, dict):
        return list(sources)
    raise ImageTypeError("images", f"expected an image or a list of images, got {type(sources).__name__}: pass a path, "
                                   "image bytes, a PIL.Image, a numpy array, or a list of them")


def image_label(source, index: int) -> str:
    """How the apps name image ``index`` in a picker: ``"3: cat.jpg"`` for a path, ``"image 3"`` otherwise."""
    if isinstance(source, (str, Path)):
        return f"{index}: {Path(source).name}"
    return f"image {index}"
