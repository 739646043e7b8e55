"""The one description of the machine a number was measured on (bench results, training records, benchmarks)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name, with family, model and stepping (float32 kernels, hence near-ties, can differ between
    CPUs of one name)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    field = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[:30]) if v}
    return (
        f"{field.get('model name', platform.processor())} (family {field.get('cpu family')}, model "
        f"{field.get('model')}, stepping {field.get('stepping')})"
    )


def _version(name: str) -> str | None:
    import importlib.metadata as md

    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def machine() -> dict:
    """The runtime (device, dtype), platform, Python, CPU, torch threads, GPU (or None) and the versions of the
    packages that shape numbers."""
    import torch

    from .runtime import current

    return {
        "runtime": current().to_json(),  # the device and dtype the models ran in (`--device`, `--dtype`)
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpus": torch.get_num_threads(),  # the torch threads the work ran on
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": {p: _version(p) for p in ("v2l", "torch", "transformers", "accelerate")},
    }
