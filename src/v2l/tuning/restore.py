"""Masked image restoration by the tuned LLM (paper §4.3, Fig. 8) and images drawn from words.

**Restoration.** A fraction of an image's 256 local tokens is masked at random (`random_mask`: exactly
round(ratio × 256) positions, seeded; one mask per call, shared by its images, so a batch runs in lockstep). The LLM
reads the image's global words as a text prefix, then the local ids in raster order: unmasked ids are teacher-forced
(the true ids), and each masked id is the LLM's greedy choice among the tokenizer's usable local ids, given
everything before it (earlier predictions included). The restored map is decoded with the image's global ids.

It runs in chunks with a KV cache: a forward over each run of known ids up to the next masked position, whose last
logits give that position; a batch of images shares the chunks (left-padded prefixes, with their attention mask and
position ids). `fill_reference` is the plain way, one full forward per masked token without a cache, kept to check
that the cached one gives the same ids and to measure it (benchmarks/bench_restore.py).

The paper's "input" image is the map with the masked ids set to 0, decoded (`masked_input`).

**Images from words (beyond the paper).** `generate_images`: the global words of a text (its VL text embedding's
nearest entries of the global codebook, as an image's are found from its VL image embedding) as the prefix, then 256
local ids sampled one at a time (temperature, top-k) with the KV cache, decoded with those global ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..backbones.llm_cache import cache_argument, returned_cache
from ..errors import V2LError
from .data import prefix_ids


def random_mask(length: int, ratio: float, seed: int = 0) -> torch.Tensor:
    """(length,) bool with exactly round(ratio × length) True positions, drawn by a generator seeded with `seed`."""
    if not (isinstance(ratio, (int, float)) and 0 < ratio < 1):
        raise V2LError(f"--mask {ratio!r} is invalid: use a fraction of the local tokens between 0 and 1, such as 0.3.")
    k = max(1, round(ratio * length))
    mask = torch.zeros(length, dtype=torch.bool)
    mask[torch.randperm(length, generator=torch.Generator().manual_seed(seed))[:k]] = True
    return mask


@dataclass
class RestoredMaps:
    restored: torch.Tensor  # (B, L) ids
    masked_input: torch.Tensor  # (B, L): masked ids set to 0
    mask: torch.Tensor  # (L,) bool


class TunedLLM:
    """The (tuned or frozen) LLM reading V2L tokens: prefixes of global words, then local ids.

    `lm` is a `LanguageModel` (with `adapter=` merged in, or frozen); `tok` the `ImageTokenizer` whose tokens it reads.
    """

    def __init__(self, tok, lm, prefix_words: int = 0, batch_size: int = 8):
        from ..tokenizer.image_tokenizer import local_tokens_for

        self.tok, self.lm, self.batch_size = tok, lm, batch_size
        self.prefix_words = prefix_words or tok.config.num_global
        exclude, _ = local_tokens_for(tok.config, tok.codebook)
        n = min(tok.net.local_quantizer.num_codes, lm.vocab_size)
        ids = [i for i in range(n) if exclude is None or not bool(exclude[i])]
        self.allowed = torch.tensor(ids, dtype=torch.long)
        self.h = tok.config.latent_size
        self.cache_arg = cache_argument(lm.model)  # `cache=` or `past_key_values=`, as transformers names it

    # ---- prefixes ------------------------------------------------------------------------------------------------
    def words(self, global_ids: torch.Tensor) -> list[list[str]]:
        return [[self.tok.codebook.entries[i]["text"] for i in row[: self.prefix_words]] for row in global_ids.tolist()]

    def prefixes(self, global_ids: torch.Tensor) -> list[list[int]]:
        return [prefix_ids(self.lm.tokenizer, self.lm.start_ids, w) for w in self.words(global_ids)]

    # ---- one forward of a chunk for a batch, with the KV cache ---------------------------------------------------
    def _forward(self, chunk: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache) -> tuple[torch.Tensor, dict]:
        """One forward of `chunk` (B, c) with the full attention mask, its positions and the cache so far; returns the
        last position's float32 logits (B, V: the model's own, softcapped where it is) and the state to go on."""
        kw = {self.cache_arg: cache} if cache is not None else {}
        out = self.lm.model(
            input_ids=chunk.to(self.lm.device),
            attention_mask=mask.to(self.lm.device),
            position_ids=pos.to(self.lm.device),
            use_cache=True,
            logits_to_keep=1,
            **kw,
        )
        return out.logits[:, -1].float(), {"cache": returned_cache(out), "mask": mask, "next_pos": pos[:, -1] + 1}

    def _step(self, chunk: torch.Tensor, state: dict) -> torch.Tensor:
        """Run `chunk` (B, c) after what `state` holds; `state` is advanced in place."""
        mask = torch.cat([state["mask"], torch.ones_like(chunk)], 1)
        pos = state["next_pos"].unsqueeze(1) + torch.arange(chunk.shape[1]).unsqueeze(0)
        logits, new = self._forward(chunk, mask, pos, state["cache"])
        state.update(new)
        return logits

    def _run_prefix(self, prefixes: list[list[int]], first: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Left-pad the prefixes, run them and `first` (B, c) in one forward; positions count real tokens only, so a
        padded prefix sees the positions an unpadded one would. Returns (last logits, state for `_step`)."""
        n = max(len(p) for p in prefixes)
        ids = torch.full((len(prefixes), n), self.lm.pad_id, dtype=torch.long)
        pad = torch.zeros((len(prefixes), n), dtype=torch.long)
        for b, p in enumerate(prefixes):
            ids[b, n - len(p) :] = torch.tensor(p, dtype=torch.long)
            pad[b, n - len(p) :] = 1
        mask = torch.cat([pad, torch.ones_like(first)], 1)
        return self._forward(torch.cat([ids, first.long()], 1), mask, (mask.cumsum(1) - 1).clamp(min=0), None)

    def _choose(self, logits: torch.Tensor) -> torch.Tensor:
        return self.allowed[logits[:, self.allowed.to(logits.device)].argmax(-1).cpu()]

    # ---- restoration ---------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def fill(self, prefixes: list[list[int]], local: torch.Tensor, mask: torch.Tensor, progress=None) -> torch.Tensor:
        """(B, L) ids: `local` with every position of `mask` predicted (teacher forcing elsewhere), batched."""
        out = []
        for s in range(0, len(local), self.batch_size):
            out.append(self._fill_batch(prefixes[s : s + self.batch_size], local[s : s + self.batch_size], mask))
            if progress:
                progress(len(out[-1]))
        return torch.cat(out)

    def _fill_batch(self, prefixes, local: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        cur = local.clone().long()
        where = mask.nonzero().flatten().tolist()
        logits, state = self._run_prefix(prefixes, cur[:, : where[0]])
        for i, q in enumerate(where):
            cur[:, q] = self._choose(logits)
            end = where[i + 1] if i + 1 < len(where) else None
            if end is None:
                break
            logits = self._step(cur[:, q:end], state)
        return cur

    @torch.inference_mode()
    def fill_reference(self, prefixes: list[list[int]], local: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The plain way: for each image and each masked position, one full forward of everything before it, with no
        cache and no batch (what `fill` is checked and measured against)."""
        cur = local.clone().long()
        for b, p in enumerate(prefixes):
            for q in mask.nonzero().flatten().tolist():
                ids = torch.tensor([list(p) + cur[b, :q].tolist()], device=self.lm.device)
                logits = self.lm.model(input_ids=ids, logits_to_keep=1).logits[:, -1].float()
                cur[b, q] = self._choose(logits)[0]
        return cur

    @torch.inference_mode()
    def restore_tokens(self, global_ids, local: torch.Tensor, ratio: float, seed: int = 0, progress=None):
        mask = random_mask(local.shape[1], ratio, seed)
        restored = self.fill(self.prefixes(global_ids), local, mask, progress)
        masked = local.clone()
        masked[:, mask] = 0
        return RestoredMaps(restored, masked, mask)

    # ---- images from words ---------------------------------------------------------------------------------------
    def text_global_ids(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, K_g) global ids of texts: the nearest global-codebook entries to each text's VL text embedding."""
        emb = self.tok.vl.encode_text(list(texts))
        return self.tok.net.global_quantizer(emb.to(self.tok.device))[1].cpu()

    @torch.inference_mode()
    def sample(
        self,
        global_ids: torch.Tensor,
        temperature: float = 1.0,
        top_k: int = 0,
        seed: int = 0,
        progress=None,
    ) -> torch.Tensor:
        """(B, L) local ids sampled after each row's prefix (temperature 0: greedy)."""
        g = torch.Generator().manual_seed(seed)
        L = self.h * self.h
        out = []
        prefixes = self.prefixes(global_ids)
        for s in range(0, len(prefixes), self.batch_size):
            pre = prefixes[s : s + self.batch_size]
            B = len(pre)
            cur = torch.zeros((B, L), dtype=torch.long)
            logits, state = self._run_prefix(pre, cur[:, :0])
            for q in range(L):
                cur[:, q] = self._draw(logits, temperature, top_k, g)
                if q + 1 < L:
                    logits = self._step(cur[:, q : q + 1], state)
                if progress:
                    progress(B / L)
            out.append(cur)
        return torch.cat(out)

    def _draw(self, logits: torch.Tensor, temperature: float, top_k: int, g: torch.Generator) -> torch.Tensor:
        x = logits[:, self.allowed.to(logits.device)].cpu()
        if temperature <= 0:
            return self.allowed[x.argmax(-1)]
        x = x / temperature
        if top_k:
            kth = x.topk(min(top_k, x.shape[1]), dim=-1).values[:, -1:]
            x = x.masked_fill(x < kth, float("-inf"))
        return self.allowed[torch.multinomial(torch.softmax(x, -1), 1, generator=g).flatten()]

    # ---- decoding ------------------------------------------------------------------------------------------------
    def decode(self, local: torch.Tensor, global_ids: torch.Tensor):
        return decode_maps(self.tok, local, global_ids)


@torch.inference_mode()
def decode_maps(tok, local: torch.Tensor, global_ids: torch.Tensor, batch_size: int = 32) -> list:
    """PIL images of flat local-id maps (B, h·w) with their global ids, `batch_size` at a time."""
    from ..tokenizer.image_tokenizer import to_images

    h, out = tok.config.latent_size, []
    for s in range(0, len(local), batch_size):
        out += to_images(
            tok.net.decode_tokens(
                local[s : s + batch_size].reshape(-1, h, h).to(tok.device),
                global_ids[s : s + batch_size].to(tok.device),
            )
        )
    return out


@dataclass
class Restored:
    restored: object  # PIL image
    masked: object  # the paper's "input": masked ids set to 0, decoded
    original: object  # the image at the tokenizer's resolution
    tokens: list[list[int]]  # the restored map
    global_ids: list[int]
    mask: list[list[bool]]
    accuracy: float  # masked positions restored to the tokenizer's own id


def restore_images(
    tok,
    lm,
    images: Sequence,
    ratio: float = 0.3,
    seed: int = 0,
    frozen: bool = False,
    batch_size: int = 8,
    progress=None,
) -> list[Restored]:
    """Mask `ratio` of each image's local tokens (one seeded mask) and restore them: by the LLM as loaded (tuned with
    an adapter, paper §4.3) or, `frozen=True`, by the frozen LLM in context (`Denoiser.restore_masked`)."""
    from ..data.images import center_crop_resize, load_image

    originals = [center_crop_resize(load_image(im), tok.config.resolution) for im in images]
    from .data import image_tokens

    reader = TunedLLM(tok, lm, batch_size=batch_size)
    gids, local = image_tokens(tok, originals)
    mask = random_mask(local.shape[1], ratio, seed)
    if frozen:
        from ..tasks.denoise import DenoiseConfig, Denoiser

        restored, _ = Denoiser(tok, lm, DenoiseConfig(seed=seed, batch_size=batch_size)).restore_masked(
            local, mask, progress
        )
    else:
        restored = reader.fill(reader.prefixes(gids), local, mask, progress)
    masked = local.clone()
    masked[:, mask] = 0
    out_imgs, in_imgs = reader.decode(restored, gids), reader.decode(masked, gids)
    grid = mask.reshape(reader.h, reader.h).tolist()
    return [
        Restored(
            out_imgs[b],
            in_imgs[b],
            originals[b],
            restored[b].reshape(reader.h, reader.h).tolist(),
            gids[b].tolist(),
            grid,
            float((restored[b, mask] == local[b, mask]).float().mean()),
        )
        for b in range(len(originals))
    ]


def generate_images(
    tok,
    lm,
    texts: Sequence[str],
    samples: int = 1,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    batch_size: int = 8,
    progress=None,
) -> list[list]:
    """For each text, `samples` images drawn by the LLM: the text's global words as the prefix, 256 sampled local
    ids, decoded with those global ids. Returns one list of (image, words, local ids) per text."""
    for t in texts:
        if not isinstance(t, str) or not t.strip():
            raise V2LError("generate: a prompt is empty: give the words or class name to draw, such as goldfish.")
    if not (isinstance(temperature, (int, float)) and 0 <= temperature <= 100):
        raise V2LError(f"--temperature {temperature!r} is invalid: use a number from 0 (greedy) to 100.")
    if not (isinstance(top_k, int) and top_k >= 0):
        raise V2LError(f"--top-k {top_k!r} is invalid: use 0 (all tokens) or a positive number.")
    reader = TunedLLM(tok, lm, batch_size=batch_size)
    gids = reader.text_global_ids(list(texts)).repeat_interleave(samples, 0)
    local = reader.sample(gids, temperature, top_k, seed, progress)
    imgs = reader.decode(local, gids)
    words = reader.words(gids)
    return [
        [(imgs[i * samples + s], words[i * samples + s], local[i * samples + s].tolist()) for s in range(samples)]
        for i in range(len(texts))
    ]
