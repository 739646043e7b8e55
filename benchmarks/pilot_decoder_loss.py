"""The 48-step pilot that chose the loss and learning rate of benchmarks/train_decoder_cpu.sh (issue: global words,
item 5): the shipped GPU-trained checkpoint's decoder fine-tuned alone on 1,024 training images (their local tokens
from the frozen encoder), scored by the mean PSNR of 200 training-class val images (never the held-out classes).
Three settings from the same start: MSE at 1e-4, MSE + the EfficientNet perceptual loss at 1e-4, MSE at 3e-4 (Adam
(0.5, 0.9), batches of 32, bf16 autocast, gradient norm clipped at 1). Prints: setting, step, PSNR (dB), seconds.

    V2L_DATA=../shared/data python benchmarks/pilot_decoder_loss.py

It ran before the fine-tune, on the checkpoint then shipped (the GPU-trained one); since that is the fine-tune's start,
`V2L_PILOT_TOKENIZER=runs/gpu-ch64/final` runs it again from the same weights. Its output is in docs/results.md.
"""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F

from common import decoded_psnr, pilot_setup
from v2l.training.losses import perceptual_loss

SETTINGS = [("mse 1e-4", 1e-4, 0.0), ("mse+perc 1e-4", 1e-4, 1.0), ("mse 3e-4", 3e-4, 0.0)]


def main() -> None:
    net, x_train, g_train, vx, vg, codes = pilot_setup()
    t0 = time.time()
    c_train, c_val = codes(x_train), codes(vx)
    print("codes", time.time() - t0, flush=True)

    def val_psnr() -> float:
        return decoded_psnr(net, c_val, vg, vx)

    start = copy.deepcopy(net.decoder.state_dict())
    print("start psnr", val_psnr(), flush=True)
    perc = perceptual_loss("effnet")
    for name, lr, weight in SETTINGS:
        net.decoder.load_state_dict(start)
        net.decoder.train()
        opt = torch.optim.Adam(net.decoder.parameters(), lr=lr, betas=(0.5, 0.9))
        t0 = time.time()
        for step in range(48):
            b = torch.randint(0, 1024, (32,))
            with torch.autocast("cpu", dtype=torch.bfloat16):
                y = net.decode_tokens(c_train[b], g_train[b])
                loss = F.mse_loss(y.float(), x_train[b])
                if weight:
                    loss = loss + weight * perc(y.float(), x_train[b]).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.decoder.parameters(), 1.0)
            opt.step()
            if step % 16 == 15:
                net.decoder.eval()
                print(name, step + 1, round(val_psnr(), 3), round(time.time() - t0, 1), flush=True)
                net.decoder.train()


if __name__ == "__main__":
    main()
