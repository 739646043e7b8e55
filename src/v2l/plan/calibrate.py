"""Measuring what the cost model cannot know from data sheets: this CPU's rates and the prompts' token counts.

`calibrate()` times three kinds of work on this machine, each as FLOPs counted by torch's `FlopCounterMode` over
measured seconds: an LLM prefill (the default LLM, SmolLM2-135M), the verbs' generation engine's decode steps (seconds
per step, as an effective memory bandwidth), and a tokenizer training step (the `cpu` preset at 64 px).
`count_train_step` counts one training step of any preset (FLOPs, saved activations, parameters) on the real network.
The results are cached per machine (`V2L_CACHE/plan/`); `v2l plan --calibrate` measures again.
"""

from __future__ import annotations

import os
import statistics
import time

import torch

from ..files import read_json
from ..paths import cache_root, write_json_atomic
from .costs import TokenStats, TrainStep
from .specs import Hardware, llm_spec


def _timed(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _count(fn) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


@torch.inference_mode()
def measure_llm(lm, batch: int = 4, length: int = 256, decode_batch: int = 8, decode_steps: int = 16) -> dict:
    """Prefill FLOP/s (the decoder on `batch` × `length` tokens, the head on the last) and seconds per decode step of
    the verbs' engine (`generate_ids` at `decode_batch` rows: 1 + `decode_steps` new tokens against 1) for `lm`."""
    g = torch.Generator().manual_seed(0)
    words = lm.vocab.ids_of_kind("word")
    ids = torch.tensor(words)[torch.randint(0, len(words), (batch, length), generator=g)]

    def prefill():
        h = lm.model.get_decoder()(input_ids=ids).last_hidden_state
        lm.model.get_output_embeddings()(h[:, -1])

    flops = _count(prefill)
    prefill_s = _timed(prefill)
    prompts = torch.tensor(words)[torch.randint(0, len(words), (decode_batch, 64), generator=g)].tolist()

    def step_seconds(rows: list) -> float:
        """Seconds per decode step: 1 + `decode_steps` new tokens against 1."""

        def generate(n):
            return lambda: lm.generate_ids(rows, max_new_tokens=n, batch_size=len(rows), logprobs=False)

        return max(_timed(generate(1 + decode_steps), 2) - _timed(generate(1), 2), 1e-6) / decode_steps

    step_s = step_seconds(prompts)
    row_s = step_seconds(prompts[:1])  # one row: the step's fixed part (reading the weights)
    return {
        "prefill_flops": flops,
        "prefill_s": prefill_s,
        "step_s": step_s,
        "decode_batch": decode_batch,
        "step_s_one_row": row_s,
        "context": 64 + decode_steps // 2,
    }


def train_network(preset: str, vocab: int, dim: int, **overrides):
    """A tokenizer of `preset` (with `overrides`, e.g. ch=64) with a random local codebook of `vocab` rows (the LLM's)
    of width `dim` (the VL's)."""
    from ..tokenizer import V2LTokenizer, get_config

    g = torch.Generator().manual_seed(0)
    local = torch.nn.functional.normalize(torch.randn(vocab, dim, generator=g), dim=-1)
    glob = torch.nn.functional.normalize(torch.randn(4096, dim, generator=g), dim=-1)
    return V2LTokenizer(get_config(preset, **overrides), local, glob)


def train_step_fn(net, batch: int):
    from ..training.discriminator import PatchDiscriminator
    from ..training.losses import perceptual_loss

    cfg = net.config
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # EfficientNet's package prints on load; stdout is for results
        disc, perc = PatchDiscriminator(n_layers=2), perceptual_loss("auto")
    params = [p for p in net.parameters() if p.requires_grad] + list(disc.parameters())
    opt = torch.optim.Adam(params, lr=1e-4)
    x = torch.rand(batch, 3, cfg.resolution, cfg.resolution) * 2 - 1
    gids = torch.randint(0, 4096, (batch, cfg.num_global))

    def step():
        out = net(x, gids)
        loss = (out.reconstruction - x).pow(2).mean() + perc(out.reconstruction, x).mean() + out.vq_loss
        loss = loss - disc(out.reconstruction).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, sum(p.numel() for p in params)


def count_train_step(preset: str, vocab: int, dim: int, **overrides) -> TrainStep:
    """FLOPs (forward + backward), saved activations and trained parameters of one training step on one image."""
    net = train_network(preset, vocab, dim, **overrides)
    step, params = train_step_fn(net, 1)
    flops = _count(step)
    seen: dict = {}

    def pack(t):
        seen[(t.data_ptr(), t.dtype, tuple(t.shape))] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return TrainStep(flops, float(sum(seen.values())), params)


def token_stats(lm=None) -> TokenStats:
    """LLM tokens per global word (the shipped global list's entries, weighted by how often filtering chose them), per
    ImageNet class name and per caption (the paper's example captions), and the share of vocabulary tokens of kind
    "word", with the LLM's tokenizer (the default LLM's when none is given)."""
    from ..backbones import LanguageModel
    from ..codebooks.artefact import shipped_vocab

    lm = lm or LanguageModel.load(progress=False)
    folder = shipped_vocab("smollm2-135m", "conse:top_t=3")
    entries = read_json(folder / "global_vocab.json", list) if folder else []
    total = sum(e["count"] for e in entries) or 1
    per_word = sum(len(e["ids"]) * e["count"] for e in entries) / total if entries else 1.6
    from ..backbones.vision_language import imagenet_class_names

    per_label = statistics.mean(len(lm.encode(" " + n)) for n in imagenet_class_names())
    captions = ["A man riding a wave on top of a surfboard.", "A plate of food with broccoli and rice on a table."]
    per_caption = statistics.mean(len(lm.encode(" " + c)) for c in captions)
    fraction = len(lm.vocab.ids_of_kind("word")) / lm.vocab_size
    return TokenStats(round(per_word, 3), round(per_label, 3), round(per_caption, 3), round(fraction, 4))


def cpu_hardware(cal: dict) -> Hardware:
    """This CPU as the cost model's hardware, from a calibration."""
    from ..machine import cpu_model

    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (ValueError, OSError, AttributeError):
        memory = 16.0
    llm = cal["llm"]
    spec = llm_spec("smollm2-135m")
    matmul = llm["prefill_flops"] / llm["prefill_s"]
    # decode: step(rows) = weights / bandwidth + rows × row FLOPs / decode rate, from the 1-row and 8-row steps
    per_row = max(llm["step_s"] - llm["step_s_one_row"], 1e-9) / (llm["decode_batch"] - 1)
    fixed = max(llm["step_s_one_row"] - per_row, 0.1 * llm["step_s_one_row"])
    bandwidth = spec.weight_bytes(4) / fixed
    decode_rate = spec.forward_flops(1, llm["context"], 1) / per_row
    conv = cal["train"]["flops"] / cal["train"]["seconds"]
    return Hardware(
        f"this CPU ({cpu_model()}, {cal['threads']} threads)",
        round(memory, 1),
        {"float32": matmul, "bfloat16": matmul},
        bandwidth,
        {"matmul": 1.0, "conv": conv / matmul, "bandwidth": 1.0},
        calibrated=True,
        decode_flops=decode_rate,
    )


def calibrate(force: bool = False, say=lambda m: None) -> dict:
    """Measure this machine (about a minute), or read the cached measurement."""
    path = cache_root() / "plan" / "calibration.json"
    if path.is_file() and not force:
        from ..files import ArtefactError

        try:
            cal = read_json(path, dict)
            if (
                {"llm", "train", "threads", "tokens"} <= set(cal)
                and "step_s_one_row" in cal["llm"]
                and cal["threads"] == torch.get_num_threads()
            ):
                return cal
            say(f"v2l: the cached calibration {path} is for other settings; measuring again")
        except ArtefactError as e:  # a damaged cache entry is measured again, never used
            say(f"v2l: {e} Measuring again.")
    say("v2l: measuring this CPU for the cost model (about a minute; cached)")
    from ..backbones import LanguageModel

    lm = LanguageModel.load(progress=False)  # the default LLM (SmolLM2-135M), on the CPU in float32
    llm = measure_llm(lm)
    net = train_network("cpu", 49152, 384)
    step, _ = train_step_fn(net, 8)
    train = {"flops": _count(step), "seconds": _timed(step, 2), "batch": 8, "preset": "cpu"}
    from dataclasses import asdict

    cal = {
        "threads": torch.get_num_threads(),
        "llm": llm,
        "train": train,
        "tokens": asdict(token_stats(lm)),  # the default LLM's tokenizer (SmolLM2's)
        "time": time.strftime("%Y-%m-%d %H:%M"),
    }
    write_json_atomic(path, cal)
    return cal
