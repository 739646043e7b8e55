"""Evaluation: reconstruction metrics (PSNR, SSIM via torchmetrics; ST-LPIPS; FID with the standard InceptionV3) and
the semantic quality of global words (class-word hit@K_g, VL score, CLIP-R, nearest-support accuracy; Table 2). The
task scores live beside their tasks (`v2l.tasks`: few-shot accuracy with intervals, caption metrics, VQA accuracy)."""

from .fid import fid, fid_from_features, frechet_distance, inception_features
from .metrics import STLPIPS, psnr, ssim
from .reconstruction import image_rows, image_scores, score_reconstructions
from .semantic import name_words, semantic_quality

__all__ = [
    "STLPIPS",
    "fid",
    "fid_from_features",
    "frechet_distance",
    "image_rows",
    "image_scores",
    "inception_features",
    "name_words",
    "psnr",
    "score_reconstructions",
    "semantic_quality",
    "ssim",
]
