"""Training the V2L tokenizer (paper §3.2, §4.1, appendix A) with Accelerate: losses, the PatchGAN discriminator,
the batch order and learning-rate schedule, resumable checkpoints and the training loop.

    from v2l.training import TrainConfig, train, training_data
"""

from .checkpoints import latest_checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data import TokenizerTrainData, image_embeddings, training_data
from .discriminator import LeCAM, PatchDiscriminator, adaptive_weight, hinge_d_loss
from .losses import PERCEPTUAL_LOSSES, LPIPSLoss, PerceptualLoss, perceptual_loss, resolve_perceptual
from .schedule import GlobalBatchSampler, lr_lambda
from .trainer import check_run_folder, train

__all__ = [
    "PERCEPTUAL_LOSSES",
    "GlobalBatchSampler",
    "LPIPSLoss",
    "LeCAM",
    "PatchDiscriminator",
    "PerceptualLoss",
    "TokenizerTrainData",
    "TrainConfig",
    "adaptive_weight",
    "check_run_folder",
    "hinge_d_loss",
    "image_embeddings",
    "latest_checkpoint",
    "load_checkpoint",
    "lr_lambda",
    "perceptual_loss",
    "resolve_perceptual",
    "save_checkpoint",
    "train",
    "training_data",
]
