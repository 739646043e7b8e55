"""The bench report's figures (PNG), like the paper's: reconstruction and denoising grids (Fig. 7), images with their
global words (Fig. 6), captions and answers on images (Fig. 5), and accuracy plots for the Table 1 factors.

Image grids are drawn with Pillow; plots with matplotlib (Agg, no display). Every figure is written atomically.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw

from ..paths import atomic_path

CELL = 96  # pixels per image cell (images are upscaled with nearest neighbours, so tokens stay visible)
LABEL = 14  # pixels of a text line


def save_png(image: Image.Image, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def image_grid(
    rows: Sequence[tuple[str, Sequence[Image.Image | None]]], columns: Sequence[str], path: Path, cell: int = CELL
) -> Path:
    """A grid: one labelled row per entry of `rows` (a None image leaves its cell empty), `columns` as headers."""
    width = cell * len(columns)
    fig = Image.new("RGB", (width, LABEL + (cell + LABEL) * len(rows)), "white")
    draw = ImageDraw.Draw(fig)
    for c, name in enumerate(columns):
        draw.text((c * cell + 3, 1), name[: cell // 6], fill="black")
    for r, (label, images) in enumerate(rows):
        y = LABEL + r * (cell + LABEL)
        draw.text((3, y + 1), label, fill="black")
        for c, im in enumerate(images):
            if im is not None:
                fig.paste(im.convert("RGB").resize((cell, cell), Image.NEAREST), (c * cell, y + LABEL))
    return save_png(fig, path)


def captioned_images(
    images: Sequence[Image.Image], texts: Sequence[str], path: Path, cell: int = 2 * CELL, lines: int = 6
) -> Path:
    """Each image with its text below (Fig. 5: captions and answers; Fig. 6: an image's global words)."""
    per_line = max(8, cell // 6)
    fig = Image.new("RGB", (cell * len(images), cell + LABEL * lines), "white")
    draw = ImageDraw.Draw(fig)
    for i, (im, text) in enumerate(zip(images, texts, strict=True)):
        fig.paste(im.convert("RGB").resize((cell, cell), Image.BICUBIC), (i * cell, 0))
        for k, line in enumerate(textwrap.wrap(text, per_line)[:lines]):
            draw.text((i * cell + 3, cell + k * LABEL), line, fill="black")
    return save_png(fig, path)


def accuracy_plot(rows_by_setting: dict[str, list[dict]], path: Path, chance: dict[str, float] | None = None) -> Path:
    """Few-shot accuracy per Table 1 cell (x) for each setting ("K_g 5, 2-way", …; one panel each) and decision rule
    (one line each), with 95 % intervals and chance."""
    from ..errors import require

    matplotlib = require("matplotlib", "The bench report's accuracy plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rules = ("paper", "constrained", "rank")
    n = len(rows_by_setting)
    fig, axes = plt.subplots(1, max(n, 1), figsize=(5 * max(n, 1), 3.6), squeeze=False)
    for ax, (setting, rows) in zip(axes[0], rows_by_setting.items(), strict=False):
        cells = [r["cell"] for r in rows]
        x = list(range(len(cells)))
        for rule in rules:
            acc = [100 * r[rule]["acc"] for r in rows]
            lo = [100 * (r[rule]["acc"] - r[rule]["ci95"][0]) for r in rows]
            hi = [100 * (r[rule]["ci95"][1] - r[rule]["acc"]) for r in rows]
            ax.errorbar(x, acc, yerr=[lo, hi], marker="o", capsize=3, label=rule)
        if chance and setting in chance:
            ax.axhline(100 * chance[setting], color="grey", linestyle="--", label="chance")
        ax.set_xticks(x, cells, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_ylabel("accuracy (%)")
        ax.set_title(setting)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
