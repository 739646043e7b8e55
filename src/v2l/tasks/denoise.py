"""In-context image restoration by a frozen LLM: the five denoising tasks of paper §4.3, Fig. 4, Table 4 (from SPAE
§3.2 and §4).

An image's local tokens are a 16×16 grid of LLM token ids (`ImageTokenizer`); the LLM reads them *as its own ids*
and predicts `m` ids at a time, constrained to the ids the local codebook can hold:

    Learn a new language and predict m tokens following the examples. Input: <n ids>, output: <m ids>. (×10)
    Input: <n ids>, output:

The 10 examples are copies of the image's tokens with a fraction of positions replaced by random allowed ids, at the
ratios 23%, 26%, …, 50% (exactly round(ratio × 256) positions each). They are shown most corrupted first, so the
least corrupted copy sits next to the query (SPAE orders its examples "from 50% to 20%").

- **inpaint / outpaint**: the 8×8 centre (inpainting) or the 8×16 bottom (outpainting) of the map is masked. Masked
  positions are filled in raster order, `m` at a time, each step reading the `n` tokens before the first unfilled one
  (earlier predictions included); every example shows the same window of a copy. All images step together, so each
  step is one batch.
- **deblur / shift / rotate**: the image is corrupted in pixels (Gaussian blur, a translation, a rotation; the
  parameters are `DenoiseConfig` fields) and tokenized. For every window start q (0, m, 2m, …) the example inputs are
  the corrupted copies' tokens [q−n, q+m), the outputs the clean copies' tokens [q, q+m) (a clean copy and its
  corrupted copy replace the same positions with the same ids); the query is the corrupted image's window. Windows
  are independent, so all windows of all images form one batch.

The restored map is decoded with the global tokens of the *corrupted* image (for in/outpainting: the image with the
masked region filled with grey), never the clean one — the official code computes them from the clean image, a leak.
Two restorations that use no LLM are offered for comparison (`baseline`): the corrupted image's own tokens decoded as
they are, and (in/outpainting) each masked token copied from its nearest unmasked neighbour.

**Every tokenizer** (`v2l.baselines`): VQ-GAN+LLM's and LQAE's 16×16 maps run the protocol above unchanged (LQAE's
WordPiece ids are fed as ids, a foreign language to the LLM like any image token). **SPAE** gives a token pyramid
(layer by layer, `token_positions` places each token on the grid by eq. 1), decoded by SPAE's **progressive in-context
decoding** (SPAE §3.2, eqs. 10–11) on the window protocol: the input sequence u is the corrupted image's pyramid (for
in/outpainting the image with its region grey), the target v the clean pyramid, the examples (u^i, v^i) a corrupted
and a clean copy with the same replacements, and segment t = [q, q+m) of v is generated from

    [û[q−n, q+m), v̂[q−n, q)]   (PAR, t′ = t: the restored tokens before it, earlier predictions included)
    û[q−n, q+m)                (PNAR, t′ = 0: every segment independent, one batch)

PAR covers the first `par_layers` layers (default 3: the 21 semantic tokens), PNAR the rest, as SPAE §3.2 does ("PAR
to generate the first few token layers given task-specific conditions, followed by PNAR"). The n-token windows are
v2l's choice (the paper conditions on whole sequences, over 500 tokens per image; docs/decisions.md). For
in/outpainting only the segments holding masked positions are generated and the unmasked tokens are kept.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from PIL import Image, ImageDraw, ImageFilter

from ..backbones.constraints import TokenSetConstraint
from ..errors import ConfigError, V2LError
from .incontext import generate_shared

TASKS = ("inpaint", "outpaint", "deblur", "shift", "rotate")
MASKED_TASKS = ("inpaint", "outpaint")
INSTRUCTION = "Learn a new language and predict {m} tokens following the examples."


@dataclass(frozen=True)
class DenoiseConfig:
    n: int = 16  # condition length: tokens read before the predicted ones (appendix B, Fig. 11)
    m: int = 2  # denoising step: tokens predicted at a time
    copies: int = 10
    ratio_start: float = 0.23
    ratio_step: float = 0.03
    blur_sigma: float = 1.5  # deblur: Gaussian blur radius (σ) in pixels at the tokenizer's resolution (64)
    shift: float = 0.125  # shift: translation right and down, as a fraction of the image side
    angle: float = 15.0  # rotate: degrees, counter-clockwise, about the centre
    fill: int = 128  # grey where a corruption leaves no image (masks, borders of shift and rotation)
    seed: int = 0
    batch_size: int = 32
    par_layers: int = 3  # SPAE only: pyramid layers decoded by PAR (then PNAR), SPAE §3.2

    @property
    def ratios(self) -> tuple[float, ...]:
        return tuple(round(self.ratio_start + self.ratio_step * k, 4) for k in range(self.copies))

    def check(self) -> None:
        if not isinstance(self.par_layers, int) or self.par_layers < 0:
            raise ConfigError(f"--par-layers {self.par_layers!r} is invalid: use a whole number, at least 0.")
        for name in ("n", "m", "copies", "batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"--{name} {v!r} is invalid: use a whole number, at least 1.")
        if not (0 <= min(self.ratios) and max(self.ratios) <= 1):
            raise ConfigError(f"Replacement ratios {self.ratios} must lie in [0, 1].")


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ConfigError(f"--task {task!r} is invalid: use one of {', '.join(TASKS)}.")


def token_mask(task: str, h: int, w: int) -> torch.Tensor:
    """(h, w) bool: the masked token positions of inpainting (centre h/2 × w/2) or outpainting (bottom h/2 rows)."""
    m = torch.zeros((h, w), dtype=torch.bool)
    if task == "inpaint":
        m[h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = True
    elif task == "outpaint":
        m[h - h // 2 :, :] = True
    else:
        raise ValueError(f"{task} has no token mask.")
    return m


def token_positions(net, h: int) -> torch.Tensor:
    """(L, 2): the grid cell (row, column) of each token in the sequence a model gives: raster order over the h × h
    map, or SPAE's pyramid layer by layer at the dilation subsampler's positions (eq. 1)."""
    sides = net.pyramid_sides
    if sides is None:
        r, c = torch.meshgrid(torch.arange(h), torch.arange(h), indexing="ij")
        return torch.stack([r.flatten(), c.flatten()], 1)
    from ..baselines.spae import dilation_positions

    out = []
    for side in sides:
        rows = torch.tensor(dilation_positions(side, h))
        r, c = torch.meshgrid(rows, rows, indexing="ij")
        out.append(torch.stack([r.flatten(), c.flatten()], 1))
    return torch.cat(out)


def corrupt_image(image: Image.Image, task: str, cfg: DenoiseConfig, grid: int = 16) -> Image.Image:
    """The corrupted image (at the tokenizer's resolution): masked region grey, blurred, shifted or rotated."""
    img = image.convert("RGB")
    size = img.size[0]
    grey = (cfg.fill,) * 3
    if task in MASKED_TASKS:
        mask = token_mask(task, grid, grid)
        cell = size / grid
        out = img.copy()
        draw = ImageDraw.Draw(out)
        rows, cols = mask.nonzero(as_tuple=True)
        draw.rectangle(
            [
                int(cols.min() * cell),
                int(rows.min() * cell),
                int((cols.max() + 1) * cell) - 1,
                int((rows.max() + 1) * cell) - 1,
            ],
            fill=grey,
        )
        return out
    if task == "deblur":
        return img.filter(ImageFilter.GaussianBlur(cfg.blur_sigma * size / 64))
    if task == "shift":
        d = round(cfg.shift * size)
        out = Image.new("RGB", img.size, grey)
        out.paste(img.crop((0, 0, size - d, size - d)), (d, d))
        return out
    if task == "rotate":
        return img.rotate(cfg.angle, resample=Image.BICUBIC, fillcolor=grey)
    raise ConfigError(f"--task {task!r} is invalid: use one of {', '.join(TASKS)}.")


def noisy_copies(
    tokens: torch.Tensor, allowed: torch.Tensor, ratios: Sequence[float], generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(copies, replaced): each copy of the flat `tokens` has exactly round(ratio × L) positions replaced by random
    ids from `allowed`; `replaced` (copies, L) holds the replacement id or −1 where the token is kept."""
    L = tokens.numel()
    replaced = torch.full((len(ratios), L), -1, dtype=torch.long)
    for s, r in enumerate(ratios):
        k = round(r * L)
        pos = torch.randperm(L, generator=generator)[:k]
        replaced[s, pos] = allowed[torch.randint(len(allowed), (k,), generator=generator)]
    return apply_replacements(tokens, replaced), replaced


def apply_replacements(tokens: torch.Tensor, replaced: torch.Tensor) -> torch.Tensor:
    t = tokens.reshape(1, -1).expand(replaced.shape[0], -1)
    return torch.where(replaced >= 0, replaced, t)


def nearest_fill(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each masked token copied from its nearest unmasked position (Euclidean on the grid; ties: raster order)."""
    h, w = mask.shape
    out = tokens.clone().reshape(h, w)
    known = (~mask).nonzero().float()
    for r, c in mask.nonzero().tolist():
        d = ((known - torch.tensor([r, c], dtype=torch.float)) ** 2).sum(1)
        kr, kc = known[int(torch.argmin(d))].long().tolist()  # argmin returns the first minimum: raster order
        out[r, c] = tokens.reshape(h, w)[kr, kc]
    return out


@dataclass
class Restoration:
    restored: Image.Image
    corrupted: Image.Image
    tokens: list[list[int]]  # the restored 16×16 map (LLM ids)
    global_ids: list[int]  # of the corrupted image
    predicted: int  # positions the LLM predicted
    info: dict = field(default_factory=dict)


class Denoiser:
    """Runs the five tasks with a frozen LLM on an `ImageTokenizer`'s local tokens (see the module docstring): the
    V2L tokenizer's, or a baseline's (SPAE's pyramid by progressive decoding)."""

    def __init__(self, tokenizer, lm, cfg: DenoiseConfig = DenoiseConfig()):
        cfg.check()
        from ..tokenizer.image_tokenizer import local_tokens_for

        self.tok, self.lm, self.cfg = tokenizer, lm, cfg
        net = tokenizer.net
        self.h = tokenizer.config.latent_size
        self.positions = token_positions(net, self.h)
        self.pyramid = net.pyramid_sides is not None
        # SPAE: the first par_layers layers by PAR; grid models: none (their windows are the protocol above).
        self.par_length = sum(s * s for s in net.sides[: cfg.par_layers]) if self.pyramid else 0
        exclude, _ = local_tokens_for(tokenizer.config, tokenizer.codebook)
        n = min(net.num_codes if self.pyramid else net.local_quantizer.num_codes, lm.vocab_size)
        ids = [i for i in range(n) if exclude is None or not bool(exclude[i])]
        if not ids:
            raise V2LError(
                f"The LLM's {lm.vocab_size} token ids hold none of the tokenizer's usable codes (they "
                "are fed to it as its own ids): use an LLM with a larger vocabulary."
            )
        self.allowed = torch.tensor(ids, dtype=torch.long)
        self.constraint = TokenSetConstraint(ids, cfg.m)
        enc = lm.encode
        self.instruction = tuple(lm.start_ids) + tuple(enc(INSTRUCTION.format(m=cfg.m)))
        self.head, self.mid, self.end = tuple(enc(" Input:")), tuple(enc(", output:")), tuple(enc("."))

    # ---- tokens --------------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def tokens(self, images: Sequence[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
        """(token sequences (B, L): the h × w map in raster order, or SPAE's pyramid; global ids (B, K_g)) of images
        already at the tokenizer's resolution."""
        from ..tokenizer.image_tokenizer import to_tensor

        out_l, out_g = [], []
        bs = self.cfg.batch_size
        for s in range(0, len(images), bs):
            chunk = list(images[s : s + bs])
            _, lids, _ = self.tok.net.encode(to_tensor(chunk, self.tok.config.resolution).to(self.tok.device))
            out_l.append(lids.flatten(1).cpu())
            out_g.append(self.tok.global_ids(chunk))
        return torch.cat(out_l), torch.cat(out_g)

    def shaped(self, seq: torch.Tensor) -> torch.Tensor:
        """Sequences (B, L) as the model decodes them: (B, h, w) maps, or SPAE's flat pyramids."""
        return seq if self.pyramid else seq.reshape(len(seq), self.h, self.h)

    @torch.inference_mode()
    def decode(self, seq: torch.Tensor, global_ids: torch.Tensor) -> list[Image.Image]:
        from ..tokenizer.image_tokenizer import to_images

        out = []
        bs = self.cfg.batch_size
        seq = seq.reshape(len(seq), -1)
        dev = self.tok.device  # where the tokenizer runs (`--device`); the token bookkeeping stays on the CPU
        for s in range(0, len(seq), bs):
            out += to_images(
                self.tok.net.decode_tokens(self.shaped(seq[s : s + bs]).to(dev), global_ids[s : s + bs].to(dev))
            )
        return out

    def masked_positions(self, task: str) -> torch.Tensor:
        """(L,) bool: the sequence positions whose grid cell the task masks."""
        grid = token_mask(task, self.h, self.h)
        return grid[self.positions[:, 0], self.positions[:, 1]]

    def prompt_count(self, task: str) -> int:
        """Prompts the LLM answers per image (the progress bar's unit): masked tokens / m on a grid, else segments."""
        if not self.pyramid:
            return prompt_steps(task, self.cfg, self.h)
        L, m = len(self.positions), self.cfg.m
        if task not in MASKED_TASKS:
            return math.ceil(L / m)
        masked = self.masked_positions(task)
        return sum(bool(masked[q : q + m].any()) for q in range(0, L, m))

    def prepare(self, images: Sequence[Image.Image]) -> list[Image.Image]:
        """Images resized (short side) and centre-cropped to the tokenizer's resolution."""
        from ..data.images import center_crop_resize, load_image

        return [center_crop_resize(load_image(im), self.tok.config.resolution) for im in images]

    # ---- prompts -------------------------------------------------------------------------------------------------
    def example(self, inp: Sequence[int], out: Sequence[int]) -> tuple[int, ...]:
        return self.head + tuple(int(t) for t in inp) + self.mid + tuple(int(t) for t in out) + self.end

    def prompt(
        self, examples: Sequence[tuple[Sequence[int], Sequence[int]]], query: Sequence[int]
    ) -> list[tuple[int, ...]]:
        return [
            self.instruction,
            *(self.example(i, o) for i, o in examples),
            self.head + tuple(int(t) for t in query) + self.mid,
        ]

    def _copies(self, clean: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The noisy copies of one image's tokens, seeded by the seed and the tokens themselves (so an image gets the
        same copies alone or in any batch)."""
        key = hashlib.sha256(clean.reshape(-1).to(torch.int64).numpy().tobytes()).hexdigest()[:12]
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + int(key, 16))
        order = sorted(self.cfg.ratios, reverse=True)  # most corrupted first, least next to the query
        return noisy_copies(clean.reshape(-1), self.allowed, order, g)

    def _generate(self, prompts, length: int, progress) -> list[list[int]]:
        cons = self.constraint if length == self.cfg.m else TokenSetConstraint(self.allowed.tolist(), length)
        gens = generate_shared(
            self.lm, prompts, length, constraint=cons, batch_size=self.cfg.batch_size, progress=progress
        )
        return [g.ids for g in gens]

    # ---- tasks ---------------------------------------------------------------------------------------------------
    def masked_prompts(self, current: torch.Tensor, copies: torch.Tensor, q: int, k: int) -> list[tuple[int, ...]]:
        n = self.cfg.n
        lo = max(0, q - n)
        return self.prompt(
            [(copies[s, lo:q].tolist(), copies[s, q : q + k].tolist()) for s in range(len(copies))],
            current[lo:q].tolist(),
        )

    def window_prompts(self, corrupted: torch.Tensor, copies_c: torch.Tensor, copies: torch.Tensor, q: int, k: int):
        """PNAR (and the grid models' deblur/shift/rotate): input û[q−n, q+m), output v[q, q+m)."""
        lo = max(0, q - self.cfg.n)
        return self.prompt(
            [(copies_c[s, lo : q + k].tolist(), copies[s, q : q + k].tolist()) for s in range(len(copies))],
            corrupted[lo : q + k].tolist(),
        )

    def progressive_prompts(
        self,
        corrupted: torch.Tensor,
        restored: torch.Tensor,
        copies_c: torch.Tensor,
        copies: torch.Tensor,
        q: int,
        k: int,
    ):
        """PAR (SPAE eq. 11 with t′ = t, windowed): input [û[q−n, q+m), v̂[q−n, q)], output v[q, q+m); the examples
        show a corrupted copy's window and the clean copy's tokens before q."""
        lo = max(0, q - self.cfg.n)
        return self.prompt(
            [
                (copies_c[s, lo : q + k].tolist() + copies[s, lo:q].tolist(), copies[s, q : q + k].tolist())
                for s in range(len(copies))
            ],
            corrupted[lo : q + k].tolist() + restored[lo:q].tolist(),
        )

    def _inputs(self, images: Sequence, task: str):
        """(clean images, corrupted images, clean token sequences, corrupted token sequences, corrupted global ids),
        all at the tokenizer's resolution."""
        check_task(task)
        clean_imgs = self.prepare(images)
        corrupted_imgs = [corrupt_image(im, task, self.cfg, self.h) for im in clean_imgs]
        clean, _ = self.tokens(clean_imgs)
        corr_local, corr_global = self.tokens(corrupted_imgs)
        return clean_imgs, corrupted_imgs, clean, corr_local, corr_global

    def restore(
        self,
        images: Sequence,
        task: str,
        progress: Callable[[int], None] | None = None,
        generate: Callable | None = None,
    ) -> list[Restoration]:
        """Restore each image after corrupting it for `task`. `generate(prompts, length)` may replace the batched
        engine (the benchmark passes the one-prompt-per-call loop)."""
        gen = generate or (lambda prompts, length: self._generate(prompts, length, progress))
        clean_imgs, corrupted_imgs, clean, corr_local, corr_global = self._inputs(images, task)
        if self.pyramid:
            restored, predicted = self._progressive(clean, corr_local, task, gen)
        elif task in MASKED_TASKS:
            restored, predicted = self._masked(clean, task, gen)
        else:
            restored, predicted = self._windows(clean, corr_local, gen)
        out_imgs = self.decode(restored, corr_global)
        maps = self.shaped(restored)
        return [
            Restoration(out_imgs[b], corrupted_imgs[b], maps[b].tolist(), corr_global[b].tolist(), predicted)
            for b in range(len(clean))
        ]

    def restore_masked(
        self, flat: torch.Tensor, mask: torch.Tensor, progress: Callable[[int], None] | None = None
    ) -> tuple[torch.Tensor, int]:
        """Masked token restoration in context (the comparison for the tuned LLM of `v2l.tuning`): token sequences
        (B, L) whose positions `mask` (L,) are unknown, filled as in inpainting. The examples are noisy copies of the
        sequence with every masked position first set to a random allowed id, so no example shows a hidden token."""
        if self.pyramid:
            raise V2LError("Masked restoration in context runs on a 16×16 grid: use the V2L tokenizer or a grid model.")
        return self._masked(flat, mask, lambda prompts, length: self._generate(prompts, length, progress), hide=True)

    def _masked(self, flat: torch.Tensor, task, gen, hide: bool = False) -> tuple[torch.Tensor, int]:
        """In/outpainting on a grid: masked positions in raster order, m at a time, each step reading the n tokens
        before it (earlier predictions included). `task` is a task name or an (L,) mask."""
        B, L, m = flat.shape[0], flat.shape[1], self.cfg.m
        mask = self.masked_positions(task) if isinstance(task, str) else task.bool()
        current = flat.clone()
        current[:, mask] = -1
        shown = flat
        if hide:
            g = torch.Generator().manual_seed(self.cfg.seed)
            shown = flat.clone()
            for b in range(B):
                shown[b, mask] = self.allowed[torch.randint(len(self.allowed), (int(mask.sum()),), generator=g)]
        copies = [self._copies(shown[b])[0] for b in range(B)]
        done: set[int] = set()
        predicted = 0
        for q in mask.nonzero().flatten().tolist():
            if q in done:
                continue
            k = min(m, L - q)
            prompts = [self.masked_prompts(current[b], copies[b], q, k) for b in range(B)]
            for b, ids in enumerate(gen(prompts, k)):
                for j, t in enumerate(ids):
                    if mask[q + j]:
                        current[b, q + j] = t
            done.update(q + j for j in range(k))
            predicted += sum(int(mask[q + j]) for j in range(k))
        return current, predicted

    def _windows(self, flat: torch.Tensor, corr_flat: torch.Tensor, gen) -> tuple[torch.Tensor, int]:
        """Deblur/shift/rotate on a grid: every window independent, all windows of all images in one batch."""
        B, L, m = flat.shape[0], flat.shape[1], self.cfg.m
        prompts, where = [], []
        for b in range(B):
            copies, replaced = self._copies(flat[b])
            copies_c = apply_replacements(corr_flat[b], replaced)
            for q in range(0, L, m):
                k = min(m, L - q)
                prompts.append(self.window_prompts(corr_flat[b], copies_c, copies, q, k))
                where.append((b, q, k))
        restored = corr_flat.clone()
        self._fill(restored, prompts, where, gen)
        return restored, L

    @staticmethod
    def _fill(
        restored: torch.Tensor, prompts: list, where: list[tuple[int, int, int]], gen, keep: torch.Tensor | None = None
    ) -> None:
        """Generate every prompt (grouped by output length) and write its ids at its (image, start, length); where
        `keep` (L,) is True the token is left as it is."""
        for k in sorted({k for _, _, k in where}):
            idx = [i for i, w in enumerate(where) if w[2] == k]
            for i, ids in zip(idx, gen([prompts[i] for i in idx], k), strict=True):
                b, q, _ = where[i]
                for j in range(k):
                    if keep is None or not keep[q + j]:
                        restored[b, q + j] = int(ids[j])

    def _progressive(self, flat: torch.Tensor, corr_flat: torch.Tensor, task: str, gen) -> tuple[torch.Tensor, int]:
        """SPAE's progressive in-context decoding (eqs. 10–11): PAR segment by segment over the first `par_length`
        tokens (all images in one batch per segment), then PNAR over the rest (every segment in one batch). For
        in/outpainting only segments holding masked positions are generated, and unmasked tokens are kept."""
        B, L, m = flat.shape[0], flat.shape[1], self.cfg.m
        keep = ~self.masked_positions(task) if task in MASKED_TASKS else torch.zeros(L, dtype=torch.bool)
        restored = torch.where(keep, flat, corr_flat)
        pairs = []
        for b in range(B):
            copies, replaced = self._copies(flat[b])
            pairs.append((apply_replacements(corr_flat[b], replaced), copies))
        segments = [(q, min(m, L - q)) for q in range(0, L, m) if not bool(keep[q : q + m].all())]
        for q, k in (s for s in segments if s[0] < self.par_length):  # PAR: each segment sees the earlier ones
            prompts = [self.progressive_prompts(corr_flat[b], restored[b], *pairs[b], q, k) for b in range(B)]
            self._fill(restored, prompts, [(b, q, k) for b in range(B)], gen, keep)
        prompts, where = [], []
        for q, k in (s for s in segments if s[0] >= self.par_length):  # PNAR: independent segments
            for b in range(B):
                prompts.append(self.window_prompts(corr_flat[b], *pairs[b], q, k))
                where.append((b, q, k))
        self._fill(restored, prompts, where, gen, keep)
        return restored, int((~keep).sum())

    def baselines(self, images: Sequence, task: str) -> dict[str, list[Image.Image]]:
        """Restorations without an LLM: `corrupted` (the corrupted image's tokens decoded as they are) and, for
        in/outpainting on a grid, `nearest` (each masked token copied from its nearest unmasked neighbour)."""
        _, _, clean, corr_local, corr_global = self._inputs(images, task)
        out = {"corrupted": self.decode(corr_local, corr_global)}
        if task in MASKED_TASKS and not self.pyramid:
            mask = token_mask(task, self.h, self.h)
            filled = torch.stack([nearest_fill(c.reshape(self.h, self.h), mask) for c in clean])
            out["nearest"] = self.decode(filled, corr_global)
        return out


def prompt_steps(task: str, cfg: DenoiseConfig, h: int = 16) -> int:
    """LLM calls per image of the one-prompt-per-step loop: masked tokens / m, or windows."""
    if task in MASKED_TASKS:
        return math.ceil(int(token_mask(task, h, h).sum()) / cfg.m)
    return math.ceil(h * h / cfg.m)
