import io

import numpy as np
import pytest
from PIL import Image

from v2l.data.images import center_crop_resize, load_image
from v2l.errors import ImageDecodeError


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_greyscale_comes_out_rgb_with_same_values(tmp_path):
    arr = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    out = load_image(_save(Image.fromarray(arr, "L"), tmp_path / "g.png"))
    assert out.mode == "RGB"
    got = np.asarray(out)
    assert (got[..., 0] == arr).all() and (got[..., 1] == arr).all() and (got[..., 2] == arr).all()


def test_rgba_is_composited_on_white(tmp_path):
    arr = np.zeros((4, 4, 4), dtype=np.uint8)
    arr[..., 0] = 255  # red
    arr[:2, :, 3] = 255  # top half opaque, bottom half fully transparent
    out = np.asarray(load_image(_save(Image.fromarray(arr, "RGBA"), tmp_path / "a.png")))
    assert (out[0, 0] == [255, 0, 0]).all()
    assert (out[3, 3] == [255, 255, 255]).all()


def test_palette_with_transparency(tmp_path):
    img = Image.new("P", (4, 4), 0)
    img.putpalette([0, 0, 255] + [0, 255, 0] + [0] * 762)
    img.putpixel((0, 0), 1)
    img.info["transparency"] = 0
    out = np.asarray(load_image(_save(img, tmp_path / "p.png", transparency=0)))
    assert (out[0, 0] == [0, 255, 0]).all()  # opaque palette entry keeps its colour
    assert (out[1, 1] == [255, 255, 255]).all()  # transparent entry becomes white, not blue


def test_cmyk_jpeg(tmp_path):
    img = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    out = np.asarray(load_image(_save(img, tmp_path / "c.jpg", quality=95))).astype(int)
    assert out[4, 4, 0] > 200 and out[4, 4, 1] < 60 and out[4, 4, 2] < 60


def test_16bit_png_scales_to_8bit(tmp_path):
    arr = np.full((4, 4), 65535, dtype=np.uint16)
    arr[0, 0] = 0
    arr[1, 1] = 32896  # 128 * 257
    out = np.asarray(load_image(_save(Image.fromarray(arr), tmp_path / "16.png")))
    assert out[2, 2, 0] == 255 and out[0, 0, 0] == 0 and out[1, 1, 0] == 128


def test_exif_rotation_is_applied(tmp_path):
    img = Image.new("RGB", (20, 10), (0, 0, 0))
    img.putpixel((0, 0), (255, 255, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    path = tmp_path / "rot.jpg"
    img.save(path, exif=exif, quality=100)
    out = load_image(path)
    assert out.size == (10, 20)  # width and height swapped


def test_truncated_jpeg_names_the_file(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    path = tmp_path / "truncated.jpg"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageDecodeError, match="truncated.jpg"):
        load_image(path)


def test_not_an_image_names_the_file(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is text, not a JPEG")
    with pytest.raises(ImageDecodeError, match="notes.jpg.*not an image"):
        load_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageDecodeError, match="does not exist"):
        load_image(tmp_path / "nope.png")


def test_center_crop_resize_keeps_the_centre():
    arr = np.zeros((10, 30, 3), dtype=np.uint8)
    arr[:, 10:20] = 255  # white centre third
    out = np.asarray(center_crop_resize(Image.fromarray(arr), 10))
    assert out.shape == (10, 10, 3) and out.mean() > 250
