"""Readers for the WebDataset shards under the data root and for plain image folders.

A WebDataset shard is a tar of `KEY.jpg` + `KEY.json` pairs. We index each shard once with the standard library's
`tarfile` and read members by offset, which gives a map-style (random-access) data set that a PyTorch `DataLoader`
can shuffle and shard across processes. (The `webdataset` package streams shards sequentially; random access and
exact per-sample errors matter more to us than streaming here, and the shards are small.)
"""

from __future__ import annotations

import json
import os
import tarfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from PIL import Image

from ..errors import DataNotFoundError, ImageDecodeError
from ..paths import data_root, unsafe_member
from .images import IMAGE_EXTENSIONS, load_image

DATASETS = ("tiny-imagenet-200", "imagenet-1k-sample", "coco-captions")


@dataclass
class Sample:
    key: str
    image: Image.Image
    meta: dict = field(default_factory=dict)

    @property
    def label(self) -> str | None:
        return self.meta.get("label")


@dataclass(frozen=True)
class _Member:
    shard: Path
    offset: int
    size: int


class _ImageSource:
    """Shared behaviour: length, indexing with optional skip-on-error, iteration."""

    on_error: str = "raise"
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.keys)

    def _read(self, i: int) -> tuple[bytes | Path, dict, str]:
        raise NotImplementedError

    def __getitem__(self, i: int) -> Sample | None:
        data, meta, name = self._read(i)
        try:
            return Sample(self.keys[i], load_image(data, name=name), meta)
        except ImageDecodeError:
            if self.on_error == "skip":
                self.skipped += 1
                return None
            raise

    def __iter__(self):
        for i in range(len(self)):
            s = self[i]
            if s is not None:
                yield s


MAX_MEMBER_BYTES = 256 << 20  # a shard member larger than this is refused before it is read (one image, one JSON)


class WebDatasetShards(_ImageSource):
    """Random-access reader for `ROOT/NAME/NAME[-SPLIT]-NNNNNN.tar` shards.

    `on_error="skip"` returns `None` for an undecodable image and counts it in `.skipped` (for training); the
    default `"raise"` raises an error naming the shard and key.
    """

    def __init__(
        self, name: str, split: str | None = None, root: str | os.PathLike | None = None, on_error: str = "raise"
    ):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', not {on_error!r}.")
        self.name, self.split, self.on_error, self.skipped = name, split, on_error, 0
        folder = data_root(root) / name
        if not folder.is_dir():
            raise DataNotFoundError(
                f"Data set {name!r} not found under {folder.parent}: pass --data-root (or set "
                f"V2L_DATA) to the folder that holds {name}/."
            )
        pattern = f"{name}-{split}-*.tar" if split else f"{name}-*.tar"
        self.shards = sorted(folder.glob(pattern))
        if not self.shards:
            raise DataNotFoundError(f"No shards {pattern} in {folder}: check the data set name and split.")
        self.folder = folder
        self._index()

    def _index(self) -> None:
        members: dict[str, dict[str, _Member]] = {}
        for shard in self.shards:
            try:
                with tarfile.open(shard, "r:") as tf:
                    for ti in tf:
                        why = (
                            unsafe_member(ti.name)
                            or ("a link" if ti.issym() or ti.islnk() else None)
                            or (f"{ti.size:,} bytes declared" if ti.isfile() and ti.size > MAX_MEMBER_BYTES else None)
                        )
                        if why:
                            raise DataNotFoundError(
                                f"Shard {shard} holds the member {ti.name!r}: {why}, which v2l refuses to read: "
                                "use shards from a source you trust."
                            )
                        if not ti.isfile() or "." not in ti.name.rsplit("/", 1)[-1]:
                            continue
                        folder, _, base = ti.name.rpartition("/")
                        stem, ext = base.split(".", 1)
                        key = f"{folder}/{stem}" if folder else stem
                        members.setdefault(key, {})[ext] = _Member(shard, ti.offset_data, ti.size)
            except DataNotFoundError:
                raise
            except (tarfile.TarError, OSError) as e:
                raise DataNotFoundError(f"Shard {shard} is not a readable tar ({e}): re-download or rebuild it.") from e
        self.keys = [k for k in members if "jpg" in members[k]]
        self._members = members
        self._meta: dict[str, dict] = {}

    @staticmethod
    def _bytes(m: _Member) -> bytes:
        with open(m.shard, "rb") as f:
            f.seek(m.offset)
            return f.read(m.size)

    def meta(self, i: int) -> dict:
        key = self.keys[i]
        if key not in self._meta:
            m = self._members[key].get("json")
            try:
                meta = json.loads(self._bytes(m)) if m else {}
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise DataNotFoundError(f"{m.shard}:{key}.json is not JSON ({e}): rebuild that shard.") from None
            if not isinstance(meta, dict):
                raise DataNotFoundError(
                    f"{m.shard}:{key}.json holds a {type(meta).__name__}, not a mapping: rebuild that shard."
                )
            self._meta[key] = meta
        return self._meta[key]

    def _read(self, i: int):
        key = self.keys[i]
        m = self._members[key]["jpg"]
        return self._bytes(m), self.meta(i), f"{m.shard.name}:{key}.jpg"

    @cached_property
    def labels(self) -> list[str | None]:
        return [self.meta(i).get("label") for i in range(len(self))]


class ImageFolder(_ImageSource):
    """Images in a folder, recursively. If images sit in sub-folders, the sub-folder name is the label."""

    def __init__(self, root: str | os.PathLike, on_error: str = "raise"):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataNotFoundError(f"Image folder {self.root} does not exist: pass a folder of images.")
        self.on_error, self.skipped = on_error, 0
        self.files = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not self.files:
            raise DataNotFoundError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found in {self.root}.")
        self.keys = [str(p.relative_to(self.root)) for p in self.files]

    def meta(self, i: int) -> dict:
        """The sample's label (its sub-folder's name), without reading the image."""
        rel = self.files[i].relative_to(self.root)
        return {"label": rel.parts[0]} if len(rel.parts) > 1 else {}

    def _read(self, i: int):
        return self.files[i], self.meta(i), str(self.files[i])


def open_images(source: str | os.PathLike, split: str | None = None, root=None, on_error: str = "raise"):
    """A data set by name (`tiny-imagenet-200`, with `split`) under the data root, or a folder of images."""
    if Path(source).is_dir():
        return ImageFolder(source, on_error=on_error)
    return WebDatasetShards(str(source), split=split, root=root, on_error=on_error)
