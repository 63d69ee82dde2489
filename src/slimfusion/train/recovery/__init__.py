"""Recovering compressed models: fine-tuning with distillation from the original (`finetune`), preparing its data
per model kind (`recover`), and step distillation (`step_distill`). Built on the one training loop in
`slimfusion.train.loop`; making the built-in models is in `slimfusion.train.builtins`."""

from slimfusion.train.recovery.finetune import FinetuneConfig, finetune
from slimfusion.train.recovery.step_distill import StepDistillConfig, distill_steps

__all__ = ["FinetuneConfig", "StepDistillConfig", "distill_steps", "finetune"]
