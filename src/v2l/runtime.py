"""Where models run: the device and dtype every model load uses, set once per command (`--device`, `--dtype`).

Every verb that runs a model takes `--device` (auto, cpu, cuda, cuda:N; or `V2L_DEVICE`) and `--dtype` (auto,
float32, bfloat16, float16; or `V2L_DTYPE`) and calls `configure`; the loaders (`LanguageModel.load`, `load_vl`,
`ImageTokenizer.from_pretrained`, the trainers) take `device=` / `dtype=` and otherwise use `current()`. `auto` is
CUDA when torch sees a GPU (bfloat16 where the card has it, float16 otherwise) and the CPU in float32 otherwise.
Under `auto` on CUDA the LLM loads with Accelerate's big-model loading (`device_map="auto"`): layers go to every visible
GPU in turn, then to the CPU, then to disk under the cache, so an LLM larger than one GPU runs unchanged.
`current().to_json()` is recorded in every result (`v2l.machine.machine()`).

The library's default, before anything calls `configure`, is `V2L_DEVICE` / `V2L_DTYPE`, else cpu and float32: a
script that never asks for a GPU gets the numbers it got before.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "cuda:N")
DTYPES = ("auto", "float32", "bfloat16", "float16")
_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16", "float": "float32"}


@dataclass(frozen=True)
class Runtime:
    """A resolved device (`cpu`, `cuda:0`, ...) and dtype name, and whether the LLM may be spread (`device_map`)."""

    device: str
    dtype: str
    device_map: str | None = None  # "auto": the LLM goes through Accelerate's big-model loading
    requested: tuple[str, str] = ("cpu", "float32")

    @property
    def torch_dtype(self):
        import torch

        return getattr(torch, self.dtype)

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def to_json(self) -> dict:
        return {
            "device": self.device,
            "dtype": self.dtype,
            "device_map": self.device_map,
            "requested": {"device": self.requested[0], "dtype": self.requested[1]},
        }


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _dtype_name(dtype) -> str:
    """A dtype's name (`bf16`, `torch.bfloat16` and `bfloat16` alike); `auto` for None."""
    name = str(dtype or "auto").strip().lower().removeprefix("torch.")
    return _ALIASES.get(name, name)


def resolve(device: str | None = "auto", dtype: str | None = "auto") -> Runtime:
    """Check and resolve `--device` and `--dtype`; one sentence for a value that cannot work on this machine."""
    import torch

    dev = (device or "auto").strip().lower()
    dt = _dtype_name(dtype)
    if dt not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}.")
    if dev != "auto" and dev != "cpu" and not re.fullmatch(r"cuda(:\d+)?", dev):
        raise ConfigError(f"--device {device!r} is not one of {', '.join(DEVICES)} (N a GPU index).")
    gpus = _cuda_count()
    if dev.startswith("cuda"):
        if gpus == 0:
            raise ConfigError(
                f"--device {device}: torch sees no CUDA device here (a CPU build of torch, or no GPU visible): "
                "use --device cpu or auto."
            )
        index = int(dev.split(":")[1]) if ":" in dev else 0
        if index >= gpus:
            raise ConfigError(f"--device {device}: this machine has {gpus} CUDA device(s), cuda:0 to cuda:{gpus - 1}.")
        dev = f"cuda:{index}"
    device_map = None
    if dev == "auto":
        dev, device_map = ("cuda:0", "auto") if gpus else ("cpu", None)
    if dt == "auto":
        dt = ("bfloat16" if torch.cuda.is_bf16_supported() else "float16") if dev.startswith("cuda") else "float32"
    if dt == "float16" and dev == "cpu":
        raise ConfigError("--dtype float16 on the CPU is slow and loses precision: use float32 or bfloat16 there.")
    return Runtime(dev, dt, device_map, ((device or "auto"), (dtype or "auto")))


_CURRENT: Runtime | None = None


def configure(device: str | None = "auto", dtype: str | None = "auto") -> Runtime:
    """Set the device and dtype of every model loaded from now on in this process (the CLI does it per command)."""
    global _CURRENT
    _CURRENT = resolve(device, dtype)
    return _CURRENT


def current() -> Runtime:
    """The configured runtime, else `V2L_DEVICE` / `V2L_DTYPE`, else cpu and float32."""
    if _CURRENT is not None:
        return _CURRENT
    device, dtype = os.environ.get("V2L_DEVICE"), os.environ.get("V2L_DTYPE")
    rt = resolve(device or "cpu", dtype or "float32")
    return Runtime(rt.device, rt.dtype, rt.device_map, (device or "default", dtype or "default"))


def pick(device=None, dtype=None) -> tuple[str, object]:
    """(device string, torch dtype) for a loader: the arguments where given, the current runtime otherwise. A
    torch dtype or a dtype name is accepted."""
    import torch

    rt = current()
    device = resolve(str(device), "float32").device if device is not None else rt.device
    if dtype is None:
        return device, rt.torch_dtype
    name = _dtype_name(dtype)
    if name not in DTYPES[1:]:
        raise ConfigError(f"dtype {dtype!r} is not one of {', '.join(DTYPES[1:])}.")
    return device, getattr(torch, name)
