"""The denoising runtime: one scheduler factory, one chain, one loss, one calibration-set builder.

Every technique that samples, trains or calibrates goes through these (docs/architecture.md).
"""

from slimfusion.diffusion.calibration import calibration_noise, calibration_set, repeat_to, self_samples
from slimfusion.diffusion.chain import (
    Predict,
    generators,
    image_generator,
    in_batches,
    predictor,
    run_chain,
    start_noise,
)
from slimfusion.diffusion.loss import denoising_loss, split_prediction, target_of
from slimfusion.diffusion.schedulers import (
    SOLVERS,
    default_scheduler_config,
    make_scheduler,
    noise_scheduler,
    schedule_of,
    use_scheduler,
)

__all__ = [
    "Predict",
    "SOLVERS",
    "calibration_noise",
    "calibration_set",
    "default_scheduler_config",
    "denoising_loss",
    "generators",
    "image_generator",
    "in_batches",
    "make_scheduler",
    "noise_scheduler",
    "predictor",
    "repeat_to",
    "run_chain",
    "schedule_of",
    "self_samples",
    "start_noise",
    "split_prediction",
    "target_of",
    "use_scheduler",
]
