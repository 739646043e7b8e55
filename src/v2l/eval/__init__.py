"""Evaluation: reconstruction metrics (PSNR, SSIM via torchmetrics; ST-LPIPS). The few-shot, captioning, VQA and
restoration scores of the tasks land here too."""

from .metrics import STLPIPS, psnr, ssim

__all__ = ["STLPIPS", "psnr", "ssim"]
