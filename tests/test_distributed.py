"""DDP with 2 CPU processes (gloo, launched by torchrun) equals one process on the same global batch."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import save_file

from v2l.codebooks import Codebook
from v2l.data import ImageFolder
from v2l.tokenizer.quantizers import nearest_k

WORKER = Path(__file__).with_name("ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one(tiny_codebook_dir, image_folder, tiny_vl, tmp_path):
    codebook = Codebook.load(tiny_codebook_dir)
    ds = ImageFolder(image_folder)
    emb = tiny_vl.encode_image([s.image for s in ds])
    gids = tmp_path / "gids.safetensors"
    save_file({"global_ids": nearest_k(emb, codebook.global_embeddings, 3).contiguous()}, str(gids))
    args = [str(tiny_codebook_dir), str(image_folder), str(gids)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parent)}
    steps = "8"
    one = subprocess.run([sys.executable, str(WORKER), *args, str(tmp_path / "one"), steps], env=env,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(WORKER), *args,
                          str(tmp_path / "two"), steps], env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    a = json.loads((tmp_path / "one" / "rows.json").read_text())
    b = json.loads((tmp_path / "two" / "rows.json").read_text())
    assert len(a) == len(b) == int(steps)
    for ra, rb in zip(a, b, strict=True):
        for k in ("loss", "rec", "perceptual", "vq"):
            assert ra[k] == pytest.approx(rb[k], rel=2e-3, abs=1e-5), (k, ra["step"], ra[k], rb[k])
    assert a[-1]["loss"] < a[0]["loss"]  # it trained
