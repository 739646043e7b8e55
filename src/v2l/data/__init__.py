"""Data: readers for WebDataset shards and image folders, robust image decoding, the fixed class split, and resumable
chunked work.

Data is read from `--data-root` / `V2L_DATA` (never copied into the repository), so a user's own ImageNet or COCO
works the same way.
"""

from .chunks import Chunks
from .images import IMAGE_EXTENSIONS, center_crop_resize, load_image, to_float_array
from .readers import DATASETS, ImageFolder, Sample, WebDatasetShards, open_images
from .splits import HELDOUT_COUNT, heldout_rule, select_indices, tiny_imagenet_classes, tiny_imagenet_split

__all__ = [
    "DATASETS",
    "HELDOUT_COUNT",
    "IMAGE_EXTENSIONS",
    "Chunks",
    "ImageFolder",
    "Sample",
    "WebDatasetShards",
    "center_crop_resize",
    "heldout_rule",
    "load_image",
    "open_images",
    "select_indices",
    "tiny_imagenet_classes",
    "tiny_imagenet_split",
    "to_float_array",
]
