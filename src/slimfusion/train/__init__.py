"""Training and recovery: the diffusion noise-prediction loss, AdamW, EMA, distillation, resumable checkpoints."""

from slimfusion.train.diffusion import TrainConfig, train_diffusion
from slimfusion.train.finetune import FinetuneConfig, finetune

__all__ = ["FinetuneConfig", "TrainConfig", "finetune", "train_diffusion"]
