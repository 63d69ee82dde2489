"""Training: the one loop (`loop.fit`: AdamW, EMA, resumable checkpoints) with its objectives and data, training a
denoiser from scratch (`diffusion`), recovery of compressed models (`recovery/`: finetune, step distillation) and
making the built-ins (`builtins/`)."""

from slimfusion.train.diffusion import TrainConfig, train_diffusion
from slimfusion.train.recovery import FinetuneConfig, finetune

__all__ = ["FinetuneConfig", "TrainConfig", "finetune", "train_diffusion"]
