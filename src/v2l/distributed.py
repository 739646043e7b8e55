"""Work spread over the processes of `accelerate launch` (or torchrun): the process group, contiguous and
round-robin shares, gathering, a barrier. One process (no launcher) is the same code with a world of one.

Under a launcher on a machine without CUDA, Accelerate joins a gloo group only when told to use the CPU; a launch that
joined fewer processes than it started is an error (one sentence), never a silent single-process run.
"""

from __future__ import annotations

import os

import torch

from .errors import V2LError


def process_state():
    """Accelerate's process state (one process without a launcher)."""
    from accelerate import PartialState

    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    state = PartialState(cpu=world > 1 and not torch.cuda.is_available())
    if state.num_processes != world:
        raise V2LError(
            f"The launcher started {world} processes but Accelerate joined {state.num_processes}: launch "
            "with `accelerate launch --multi_gpu --num_processes N -m v2l VERB ...`."
        )
    return state


def world() -> tuple[int, int]:
    """(this process's index, the number of processes); (0, 1) without a launcher, without touching Accelerate."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) == 1:
        return 0, 1
    st = process_state()
    return st.process_index, st.num_processes


def shard(items: list) -> list:
    """This process's contiguous share of `items` (all of them in one process)."""
    rank, size = world()
    if size == 1:
        return list(items)
    per = -(-len(items) // size)
    return list(items[rank * per : (rank + 1) * per])


def gather(local: list) -> list:
    """Every process's `shard` results, concatenated in process order (= the one-process order)."""
    if world()[1] == 1:
        return list(local)
    from accelerate.utils import gather_object

    return gather_object(list(local))


def barrier() -> None:
    """Wait for every process (nothing in one process)."""
    if world()[1] > 1:
        process_state().wait_for_everyone()


def is_main() -> bool:
    return world()[0] == 0
