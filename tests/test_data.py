import io
import json
import tarfile

import numpy as np
import pytest
from PIL import Image

from v2l.data import (
    HELDOUT_COUNT,
    ImageFolder,
    WebDatasetShards,
    heldout_rule,
    open_images,
    tiny_imagenet_classes,
    tiny_imagenet_split,
)
from v2l.errors import DataNotFoundError, ImageDecodeError


def _jpeg(color=(200, 10, 10), size=(16, 16)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "JPEG")
    return buf.getvalue()


def _write_shard(path, samples):
    with tarfile.open(path, "w") as tf:
        for name, data in samples:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))


def test_tiny_imagenet_val_reads_with_labels(data_root):
    ds = WebDatasetShards("tiny-imagenet-200", split="val", root=data_root)
    assert len(ds) == 2000
    s = ds[0]
    assert s.image.mode == "RGB" and s.image.size == (64, 64)
    assert s.meta["split"] == "val" and isinstance(s.label, str) and s.meta["wnid"].startswith("n")


def test_split_is_fixed_disjoint_and_follows_the_rule(data_root):
    split = tiny_imagenet_split()
    wnids = [r["wnid"] for r in tiny_imagenet_classes(data_root)]
    assert len(split["heldout"]) == HELDOUT_COUNT >= 40
    assert len(split["train"]) == 200 - HELDOUT_COUNT
    assert not set(split["heldout"]) & set(split["train"])
    assert set(split["heldout"]) | set(split["train"]) == set(wnids)
    assert heldout_rule(wnids) == split["heldout"]  # the shipped list is what the documented rule gives


def test_filtering_with_all_classes_never_takes_an_evaluation_image(data_root):
    from v2l.data import select_indices
    from v2l.data.splits import HELDOUT_POOL_TRAIN

    held = set(tiny_imagenet_split()["heldout"])
    for split, per_class in (("train", 100), ("val", 10)):
        ds = WebDatasetShards("tiny-imagenet-200", split=split, root=data_root)
        pool = set(select_indices(ds, "heldout", 0, data_name="tiny-imagenet-200"))  # the few-shot pool
        every = set(select_indices(ds, "all", 0, data_name="tiny-imagenet-200"))
        assert not pool & every and len(pool | every) == len(ds)  # each image is one or the other
        in_pool = {w: sum(ds.meta(i)["wnid"] == w for i in pool) for w in held}
        assert set(in_pool.values()) == {min(per_class, HELDOUT_POOL_TRAIN) if split == "train" else per_class}
        filt = select_indices(ds, "all", 50, data_name="tiny-imagenet-200")  # the default codebook's images
        classes = {ds.meta(i)["wnid"] for i in filt}
        assert not set(filt) & pool
        assert (held <= classes) == (split == "train")  # held-out classes filter with their other train images
        assert len(filt) == (200 * 50 if split == "train" else 160 * 10)


def test_synthetic_shard_and_skip_mode(tmp_path):
    root = tmp_path / "data"
    (root / "toy").mkdir(parents=True)
    _write_shard(
        root / "toy" / "toy-train-000000.tar",
        [
            ("a.jpg", _jpeg()),
            ("a.json", json.dumps({"label": "red"}).encode()),
            ("b.jpg", b"garbage bytes"),
            ("b.json", b"{}"),
        ],
    )
    ds = WebDatasetShards("toy", split="train", root=root)
    assert len(ds) == 2 and ds[0].label == "red"
    with pytest.raises(ImageDecodeError, match=r"toy-train-000000.tar:b.jpg"):
        ds[1]
    skipping = WebDatasetShards("toy", split="train", root=root, on_error="skip")
    assert [s.key for s in skipping] == ["a"] and skipping.skipped == 1


def test_truncated_shard_is_named(tmp_path):
    root = tmp_path / "data"
    (root / "toy").mkdir(parents=True)
    good = tmp_path / "good.tar"
    _write_shard(good, [("a.jpg", _jpeg(size=(64, 64))), ("a.json", b"{}")] * 1)
    (root / "toy" / "toy-000000.tar").write_bytes(good.read_bytes()[:700])
    with pytest.raises(DataNotFoundError, match="toy-000000.tar"):
        WebDatasetShards("toy", root=root)


def test_missing_data_root_and_set(tmp_path, monkeypatch):
    monkeypatch.delenv("V2L_DATA", raising=False)
    with pytest.raises(DataNotFoundError, match="--data-root"):
        WebDatasetShards("tiny-imagenet-200")
    with pytest.raises(DataNotFoundError, match="not found"):
        WebDatasetShards("no-such-set", root=tmp_path)


def test_image_folder_labels_from_subfolders(tmp_path):
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
        Image.fromarray(np.zeros((8, 8), np.uint8), "L").save(tmp_path / label / "x.png")
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    ds = open_images(tmp_path, on_error="skip")
    assert isinstance(ds, ImageFolder)
    samples = list(ds)
    assert sorted(s.label for s in samples) == ["cat", "dog"] and ds.skipped == 1
    assert all(s.image.mode == "RGB" for s in samples)
