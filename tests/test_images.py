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


def test_centre_crop_memory_is_bounded_by_the_output_size(monkeypatch):
    """A long strip is never resized whole: no intermediate image is larger than 4 × size² pixels."""
    sizes = []
    real = Image.Image.resize

    def spy(self, size, *a, **kw):
        sizes.append(size[0] * size[1])
        return real(self, size, *a, **kw)

    monkeypatch.setattr(Image.Image, "resize", spy)
    strip = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 980, 3), dtype=np.uint8))  # 49:1
    out = center_crop_resize(strip, 224)
    assert out.size == (224, 224) and max(sizes) <= 4 * 224 * 224
    # the same sampling as resize-then-crop, up to Pillow's two-pass rounding
    monkeypatch.setattr(Image.Image, "resize", real)
    nw = round(980 * 224 / 20)
    ref = np.asarray(
        strip.resize((nw, 224), Image.BICUBIC).crop(((nw - 224) // 2, 0, (nw - 224) // 2 + 224, 224)), dtype=int
    )
    assert np.abs(np.asarray(out, dtype=int) - ref).mean() < 3


def test_ordinary_photos_take_the_exact_path():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (375, 500, 3), dtype=np.uint8))
    nw = round(500 * 224 / 375)
    ref = img.resize((nw, 224), Image.BICUBIC).crop(((nw - 224) // 2, 0, (nw - 224) // 2 + 224, 224))
    assert np.array_equal(np.asarray(center_crop_resize(img, 224)), np.asarray(ref))


def test_bomb_and_absurd_aspect_ratios_are_refused_before_decoding(tmp_path):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0))
        + chunk(b"IEND", b"")
    )
    with pytest.raises(ImageDecodeError, match="decompression-bomb guard of 89,478,485") as e:
        load_image(bomb)
    assert "bomb.png" in str(e.value) and "corrupt" not in str(e.value)
    strip = tmp_path / "strip.png"
    Image.new("RGB", (30000, 1)).save(strip)
    with pytest.raises(ImageDecodeError, match="aspect ratio over the limit of 50:1"):
        load_image(strip)


def test_folders_and_symlink_loops_are_named_as_such(tmp_path):
    import os

    with pytest.raises(ImageDecodeError, match="is a folder"):
        load_image(tmp_path)
    os.symlink("b.png", tmp_path / "a.png")
    os.symlink("a.png", tmp_path / "b.png")
    with pytest.raises(ImageDecodeError, match="symlink loop"):
        load_image(tmp_path / "a.png")
