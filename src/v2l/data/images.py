"""Robust image decoding: every readable image comes out as 8-bit RGB, upright, or a clear error naming the file.

Handles greyscale, 1-bit, palette (with or without transparency), RGBA/LA (composited on white), CMYK, 16-bit and
32-bit integer / float images, and EXIF orientation. Pillow does the work; v2l only picks the conversions.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageDecodeError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
# Decompression-bomb guard: Pillow's own default limit (89.5 megapixels, ~268 MB as 8-bit RGB). A larger image is
# refused before it is decoded; set V2L_MAX_IMAGE_PIXELS to raise the limit for a trusted, genuinely huge image.
MAX_IMAGE_PIXELS = int(os.environ.get("V2L_MAX_IMAGE_PIXELS") or 89_478_485)
# Centre-cropping keeps the central square, so an image far from square keeps almost nothing of itself.
MAX_ASPECT_RATIO = 50


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # High bit depth: scale the actual range of the type to 8 bits (16-bit -> /257, float -> [0,1] assumed).
        arr = np.asarray(img)
        if mode == "F":
            arr = np.clip(arr, 0.0, 1.0) * 255.0 if arr.max(initial=0) <= 1.0 else np.clip(arr, 0, 255)
        elif mode.startswith("I;16") or arr.max(initial=0) <= 65535:
            arr = arr.astype(np.float64) / 257.0
        else:
            arr = arr.astype(np.float64) / 16843009.0  # 2**32-1 / 255
        grey = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")
        return grey.convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    # L, 1, CMYK, YCbCr, LAB, HSV: Pillow's converters are correct for these.
    return img.convert("RGB")


def load_image(source: str | os.PathLike | bytes | Image.Image, name: str | None = None) -> Image.Image:
    """Decode `source` (a path, encoded bytes or a PIL image) into an upright 8-bit RGB PIL image.

    `name` is what error messages call the input (defaults to the path). Raises `ImageDecodeError` with one sentence
    for a missing path, a folder, a broken symlink, a file that is not an image, a truncated or corrupt one, an image
    over the decompression-bomb guard (`MAX_IMAGE_PIXELS`) and one of an absurd aspect ratio (`MAX_ASPECT_RATIO`).
    """
    if isinstance(source, Image.Image):
        _check_size(source.size, name or "image")
        return _to_rgb(ImageOps.exif_transpose(source))
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    try:
        if isinstance(source, bytes):
            fp = io.BytesIO(source)
        else:
            fp = open(_existing_file(Path(source), label), "rb")  # noqa: SIM115 - closed below
        with fp, warnings.catch_warnings():
            # Pillow warns (not raises) on some broken EXIF data; the image itself is still fine.
            warnings.simplefilter("ignore")
            img = _open_unguarded(fp)
            _check_size(img.size, label)  # v2l's guard, from the header, before any pixel is decoded
            img.load()  # forces a full decode: truncated data raises here, not later
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageDecodeError(f"Image {label} is refused by the decompression-bomb guard ({e}).") from e
    except UnidentifiedImageError as e:
        raise ImageDecodeError(f"{label} is not an image Pillow can read: pass a JPEG, PNG or other image file.") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageDecodeError(f"Image {label} is corrupt or truncated ({e}): re-export or remove it.") from e


def _open_unguarded(fp) -> Image.Image:
    """`Image.open` (reads the header only) without Pillow's own bomb check, which `_check_size` replaces with one
    limit and one message (Pillow refuses at 2× its limit with a message about DOS attacks, and only warns below)."""
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        return Image.open(fp)
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _existing_file(path: Path, label: str) -> Path:
    if path.is_file():
        return path
    if path.is_dir():
        raise ImageDecodeError(f"Image {label} is a folder, not an image file: pass the image files in it.")
    if path.is_symlink():
        raise ImageDecodeError(f"Image {label} is a broken symbolic link or a symlink loop: fix or remove the link.")
    raise ImageDecodeError(f"Image {label} does not exist: check the path.")


def _check_size(size: tuple[int, int], label: str) -> None:
    w, h = size
    if w * h > MAX_IMAGE_PIXELS:
        raise ImageDecodeError(
            f"Image {label} has {w}×{h} = {w * h:,} pixels, over the decompression-bomb guard of {MAX_IMAGE_PIXELS:,}: "
            "downscale it, or set V2L_MAX_IMAGE_PIXELS if you trust it."
        )
    if min(w, h) < 1 or max(w, h) > MAX_ASPECT_RATIO * min(w, h):
        raise ImageDecodeError(
            f"Image {label} is {w}×{h}, an aspect ratio over the limit of {MAX_ASPECT_RATIO}:1 (its centre crop would "
            "keep almost nothing): crop it to the part you mean."
        )


def center_crop_resize(img: Image.Image, size: int, resample=Image.BICUBIC) -> Image.Image:
    """Resize so the short side is `size`, then take the central `size`×`size` crop (the CLIP/ImageNet policy).

    Memory is bounded by the output size whatever the aspect ratio: when the resized image would exceed 4·size²
    pixels (an aspect ratio over 4:1), only the source region the crop keeps is resized (Pillow's `box`), so the full
    resized image is never made (a 1×30,000 image would be 224×6.7M). The sampling positions are the same; Pillow's
    two-pass filter then differs from resize-then-crop by a few grey levels. Ordinary photos take the exact path.
    """
    w, h = img.size
    if (w, h) == (size, size):
        return img
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    left, top = (nw - size) // 2, (nh - size) // 2
    if nw * nh <= 4 * size * size:
        return img.resize((nw, nh), resample=resample).crop((left, top, left + size, top + size))
    sx, sy = w / nw, h / nh  # source pixels per resized pixel, per axis, as resize((nw, nh)) uses them
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    return img.resize((size, size), resample=resample, box=box)


def to_float_array(img: Image.Image) -> np.ndarray:
    """HWC float32 in [0, 255]."""
    return np.asarray(img, dtype=np.float32)
