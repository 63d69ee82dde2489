"""The one training loop behind `train` (from scratch) and `finetune` (recovery with optional distillation).

Runs under Hugging Face Accelerate, so `accelerate launch` scales it to several processes / GPUs: every process
draws its own batches (batch_size is per process) and DDP averages the gradients. Checkpoints hold the EMA model
(loadable as is) plus the exact training state, so `resume` continues bit for bit where the run stopped.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import gather_object
from torch import nn

from slimfusion.diffusion import noise_scheduler, schedule_of
from slimfusion.diffusion.chain import image_generator
from slimfusion.errors import ConfigError
from slimfusion.models.families import check_trainable, example_inputs, no_label_dropout
from slimfusion.models.io import save
from slimfusion.models.meta import get_meta, record_step
from slimfusion.progress import progress_bar
from slimfusion.sparsify import keep_masks
from slimfusion.train import state as train_state
from slimfusion.train.config import TrainConfig
from slimfusion.train.distill import Student
from slimfusion.train.objective import DenoisingObjective, Objective
from slimfusion.train.trainset import TrainSet, as_trainset


def make_accelerator(mixed_precision: str = "no"):
    """An Accelerator on the GPU when there is one, else on the CPU (multi-process CPU runs use gloo)."""
    cpu = not torch.cuda.is_available()
    if cpu and mixed_precision == "fp16":
        raise ConfigError("--mixed-precision fp16 needs a GPU; use bf16 or no on the CPU")
    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != mixed_precision:
        AcceleratorState._reset_state()  # a second run in one process (tests, notebooks) with other settings
    return Accelerator(cpu=cpu, mixed_precision=mixed_precision)


def process_generator(seed: int, rank: int) -> torch.Generator:
    """Batch / noise / timestep generator of one process (rank 0 uses `seed` itself, as single-process runs did;
    the others the sampling chain's per-index streams)."""
    return torch.Generator().manual_seed(seed) if rank == 0 else image_generator(seed, rank)


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up to `lr` over `warmup_steps`, then constant or cosine-decayed to 0 (step counts from 1).

    A pure function of the step, so a resumed run gets the same rates without saving a scheduler's state.
    """
    if step <= config.warmup_steps:
        return config.lr * step / max(1, config.warmup_steps)
    if config.lr_decay == "constant":
        return config.lr
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def fit(
    model: nn.Module,
    data: torch.Tensor | TrainSet,
    config: TrainConfig,
    step_name: str,
    teacher: nn.Module | None = None,
    out: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = False,
    progress: bool = True,
    stop_at: int | None = None,
    objective: Objective | None = None,
    extras: Callable[[Path], None] | None = None,
) -> nn.Module:
    """Train `model` in place with the DDPM loss (plus distillation terms when the config has them).

    Args:
        model (`nn.Module`): the denoiser to train (any family with `feature_blocks`: UNet2DModel,
            UNet2DConditionModel, DiT).
        data (`torch.Tensor` or `TrainSet`): training images [N, C, H, W] in [-1, 1] for unconditional models, or
            a `TrainSet` of (latent) inputs with their conditions.
        config (`TrainConfig` or `FinetuneConfig`): settings; `distill` / `feature_distill` weights are read when
            present.
        step_name (`str`): the history entry to record ("train" or "finetune").
        teacher (`nn.Module`, optional): the original model, for distillation.
        out (`str` or `Path`, optional): run folder that checkpoints are written to (and resumed from).
        checkpoint_every (`int`, defaults to 0): checkpoint period in steps; 0 writes none.
        resume (`bool`, defaults to False): continue from the checkpoint in `out`.
        progress (`bool`, defaults to True): progress bar with loss and steps/s (main process only).
        stop_at (`int`, optional): return after this step without finishing (simulates a killed run in tests).
        objective (`Objective`, optional): what a step minimises (default: the denoising loss, plus distillation
            terms); step distillation passes its own (`slimfusion.train.recovery.step_distill`).
        extras (`Callable`, optional): writes more files into every checkpoint (e.g. a progressive round's teacher).

    Returns:
        `model` with its EMA weights loaded, in eval mode, with the step recorded in its history.
    """
    check_trainable(model)
    data = as_trainset(data)
    expected = tuple(next(iter(example_inputs(model, 1).values())).shape[1:])
    if tuple(data.inputs.shape[1:]) != expected:
        raise ConfigError(f"training inputs have shape {tuple(data.inputs.shape[1:])}; the model takes {expected}")
    if getattr(config, "distill", 0.0) is None:  # FinetuneConfig's default: distil whenever there is a teacher
        config = config.model_copy(update={"distill": 1.0 if teacher is not None else 0.0})
    distill = getattr(config, "distill", 0.0)
    feature_weight = getattr(config, "feature_distill", 0.0)
    if (distill or feature_weight) and teacher is None:
        raise ConfigError("distillation (--distill / --feature-distill) needs --teacher")
    if (checkpoint_every or resume) and out is None:
        raise ConfigError("checkpoints and --resume need an output folder")
    accelerator = make_accelerator(config.mixed_precision)
    rank, world = accelerator.process_index, accelerator.num_processes
    scheduler_config = schedule_of(model, config.num_train_timesteps)
    noising = noise_scheduler(model, config.num_train_timesteps)
    if teacher is not None:
        teacher.eval().requires_grad_(False)
    student = Student(model, teacher, features=feature_weight > 0)
    if objective is None:
        objective = DenoisingObjective(noising, teacher, distill, feature_weight, accelerator.unwrap_model)
    if teacher is not None:
        teacher.to(accelerator.device)
    optimizer = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    # lazy: diffusers.training_utils imports every diffusers model class (~2 s) for every command otherwise
    from diffusers.training_utils import EMAModel

    ema = EMAModel(model.parameters(), decay=config.ema_decay, use_ema_warmup=True, power=3 / 4)
    gen = process_generator(config.seed, rank)
    torch.manual_seed(config.seed + rank)
    first_step, running = 1, None
    if resume:
        first_step, running = _restore(Path(out), student, optimizer, ema, gen, config, rank, world)
    student, optimizer = accelerator.prepare(student, optimizer)
    zeros = _sparsity_keeper(model)
    ema.to(accelerator.device)
    data = data.to(accelerator.device)
    start = time.perf_counter()
    with progress_bar(progress and accelerator.is_local_main_process) as bar, no_label_dropout(model):
        task = bar.add_task(step_name, total=config.steps, completed=first_step - 1, status="")
        for step in range(first_step, config.steps + 1):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, step)
            idx = torch.randint(0, len(data), (config.batch_size,), generator=gen)
            clean, cond = data.draw(idx, gen)
            noise = torch.randn(clean.shape, generator=gen).to(accelerator.device)
            t = objective.timesteps(len(clean), gen).to(accelerator.device)
            with accelerator.autocast():
                loss = objective.loss(student, clean, cond, noise, t)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(student.parameters(), config.grad_clip)
            optimizer.step()
            zeros.apply()
            ema.step(model.parameters())
            value = accelerator.reduce(loss.detach(), "mean").item()
            running = value if running is None else 0.98 * running + 0.02 * value
            rate = (step - first_step + 1) / (time.perf_counter() - start)
            images = rate * config.batch_size * world
            bar.update(task, completed=step, status=f"loss {running:.4f}  {rate:.2f} steps/s  {images:.0f} img/s")
            last = step == config.steps or step == stop_at
            if checkpoint_every and step % checkpoint_every == 0 and not last:
                _checkpoint(accelerator, Path(out), model, student, optimizer, ema, gen, config, step, running, extras)
            if stop_at is not None and step == stop_at:
                accelerator.unwrap_model(student).close()  # the hooks go, as after a kill
                return model
    accelerator.wait_for_everyone()
    accelerator.unwrap_model(student).close()
    ema.copy_to(model.parameters())
    model.eval()
    get_meta(model)["scheduler"] = scheduler_config
    effect = {
        "wall_s": round(time.perf_counter() - start, 1),
        "final_loss": running,
        "train_examples": len(data),
        "conditional": data.conditional,
        "processes": world,
        "resumed_from": first_step - 1 if resume else None,
    }
    record_step(model, step_name, config.model_dump() | {"teacher": _teacher_name(teacher)}, effect)
    return model


class _SparsityKeeper:
    """Re-zeroes the weights a `sparsify` step zeroed after every optimizer step, so a sparse model stays sparse
    (its EMA then stays sparse too: it only ever averages zeros there)."""

    def __init__(self, params: dict[str, nn.Parameter], masks: dict[str, torch.Tensor]):
        self.pairs = [(params[name], mask.to(params[name].device, params[name].dtype)) for name, mask in masks.items()]

    @torch.no_grad()
    def apply(self) -> None:
        for param, mask in self.pairs:
            param.mul_(mask)


def _sparsity_keeper(model: nn.Module) -> _SparsityKeeper:
    return _SparsityKeeper(dict(model.named_parameters()), keep_masks(model))


def _teacher_name(teacher: nn.Module | None) -> str | None:
    return None if teacher is None else get_meta(teacher).get("source")


def _checkpoint(accelerator, out, model, student, optimizer, ema, gen, config, step, running, extras=None) -> None:
    """Write the EMA model of `step` plus the exact training state into `out`, atomically (main process)."""
    rng_states = [gen.get_state()]
    if accelerator.num_processes > 1:
        rng_states = gather_object(rng_states)
    if accelerator.is_main_process:
        snapshot = copy.deepcopy(model)
        ema.copy_to(snapshot.parameters())
        unwrapped = accelerator.unwrap_model(student)

        def write(folder: Path) -> None:
            train_state.write_state(
                folder,
                step=step,
                running_loss=running,
                config=config.model_dump(),
                trainable={k: v.cpu() for k, v in unwrapped.state_dict().items()},
                optimizer=optimizer,
                ema_state=ema.state_dict(),
                rng_states=rng_states,
            )
            if extras is not None:
                extras(folder)

        save(snapshot.eval(), out, overwrite=True, extras=write)
    accelerator.wait_for_everyone()


def _restore(out, student, optimizer, ema, gen, config, rank, world) -> tuple[int, float | None]:
    """Load the checkpoint in `out` into the (not yet prepared) student, optimizer, EMA and generator."""
    record, trainable, tensors = train_state.read_state(out)
    # A setting added after the checkpoint was written is absent from it; its default is what that run did.
    saved = {name: field.default for name, field in type(config).model_fields.items()} | record["config"]
    train_state.check_same_run(saved, config.model_dump(), world, record["processes"])
    if record["step"] >= config.steps:
        raise ConfigError(f"--resume: the checkpoint is at step {record['step']}; raise --steps to continue")
    try:
        student.load_state_dict(trainable, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"--resume: checkpoint in {out} does not match the model being trained") from exc
    optimizer.load_state_dict(train_state.optimizer_state(record, tensors))
    ema.load_state_dict(train_state.ema_state(record, tensors))
    gen.set_state(tensors[f"rng.{rank}"])
    return record["step"] + 1, record["running_loss"]
