"""Training and recovery: the diffusion noise-prediction loss, AdamW, EMA."""

from slimfusion.train.diffusion import TrainConfig, train_diffusion

__all__ = ["TrainConfig", "train_diffusion"]
