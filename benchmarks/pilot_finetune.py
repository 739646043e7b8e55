"""The 48-step pilot that chose what benchmarks/train_whole_cpu.sh trains (issue: global words, item 5): from the
shipped checkpoint (after its two decoder-only stages), train the whole model or the decoder alone on 1,024 training
images, scored by the mean PSNR of 200 training-class val images (never the held-out classes), re-tokenised at each
score since the encoder may move. Settings (`MODE:LR`, Adam (0.5, 0.9), constant learning rate, batches of 32, bf16
autocast, gradient norm clipped at 1): `all` the whole model with the pixel MSE plus the quantiser's loss (§3.2,
without the perceptual and GAN terms); `dec` the decoder alone on the frozen encoder's tokens, MSE; `declog` the
decoder alone with the per-image log-MSE (the mean PSNR itself, scaled to the MSE's gradient size). Prints: setting,
step, PSNR (dB), seconds.

    V2L_DATA=../shared/data python benchmarks/pilot_finetune.py all:1e-4 dec:1e-4 declog:1e-4 all:5e-5

It ran on the checkpoint shipped before the whole-model stage; `V2L_PILOT_TOKENIZER=runs/shipped-stage3` runs it
again from the same weights (a copy of that checkpoint). Output: benchmarks/results/finetune-pilot.txt.
"""

from __future__ import annotations

import copy
import sys
import time

import torch

from common import decoded_psnr, pilot_setup


def main(settings: list[str]) -> None:
    net, x_train, g_train, vx, vg, codes = pilot_setup()
    c_train = codes(x_train)

    def val_psnr() -> float:  # re-tokenised: the encoder may have moved
        return decoded_psnr(net, codes(vx), vg, vx)

    start = copy.deepcopy(net.state_dict())
    print("start psnr", val_psnr(), flush=True)
    for setting in settings:
        mode, lr = setting.split(":")
        net.load_state_dict(start)
        net.train()
        decoder = mode.startswith("dec")
        params = list(net.decoder.parameters()) if decoder else [p for p in net.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=float(lr), betas=(0.5, 0.9))
        t0 = time.time()
        g = torch.Generator().manual_seed(1)
        for step in range(48):
            b = torch.randint(0, 1024, (32,), generator=g)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                if decoder:
                    y, vq = net.decode_tokens(c_train[b], g_train[b]), 0
                else:
                    out = net(x_train[b], g_train[b])
                    y, vq = out[0], out[2]
                err = (y.float() - x_train[b]).pow(2).flatten(1).mean(1)
                loss = (torch.log(err).mean() * err.mean().detach() if mode.endswith("log") else err.mean()) + vq
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            if step % 16 == 15:
                net.eval()
                print(setting, step + 1, round(val_psnr(), 3), round(time.time() - t0, 1), flush=True)
                net.train()


if __name__ == "__main__":
    main(sys.argv[1:])
