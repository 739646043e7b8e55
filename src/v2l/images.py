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

from .errors import ImageDecodeError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


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

    `name` is what error messages call the input (defaults to the path). Raises `ImageDecodeError` for files that are
    not images, are truncated or corrupt.
    """
    if isinstance(source, Image.Image):
        return _to_rgb(ImageOps.exif_transpose(source))
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    try:
        if isinstance(source, bytes):
            fp = io.BytesIO(source)
        else:
            path = Path(source)
            if not path.is_file():
                raise ImageDecodeError(f"Image {label} does not exist: check the path.")
            fp = open(path, "rb")  # noqa: SIM115 - closed below
        with fp, warnings.catch_warnings():
            # Pillow warns (not raises) on some broken EXIF data; the image itself is still fine.
            warnings.simplefilter("ignore")
            img = Image.open(fp)
            img.load()  # forces a full decode: truncated data raises here, not later
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as e:
        raise ImageDecodeError(f"{label} is not an image Pillow can read: pass a JPEG, PNG or other image file.") from e
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageDecodeError(f"Image {label} is corrupt or truncated ({e}): re-export or remove it.") from e


def center_crop_resize(img: Image.Image, size: int, resample=Image.BICUBIC) -> Image.Image:
    """Resize so the short side is `size`, then take the central `size`×`size` crop (the CLIP/ImageNet policy)."""
    w, h = img.size
    scale = size / min(w, h)
    if (w, h) != (size, size):
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), resample=resample)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return img


def to_float_array(img: Image.Image) -> np.ndarray:
    """HWC float32 in [0, 255]."""
    return np.asarray(img, dtype=np.float32)
