"""Seeded, batched sampling from a denoiser with any diffusers solver (`slimfusion.diffusion.SOLVERS`).

Image i always starts from (and, for stochastic solvers, draws its step noise from) its own generator seeded by
(seed, i), so a result does not depend on the batch size or on how the indices are split across processes.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from accelerate import PartialState
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from slimfusion.diffusion import image_generator, in_batches, make_scheduler, predictor, run_chain, start_noise
from slimfusion.diffusion.schedulers import known_solver, stored_sampler
from slimfusion.errors import ConfigError, CorruptFileError, NotAModelError
from slimfusion.grids import labelled_grid
from slimfusion.images import make_grid, save_image, to_uint8
from slimfusion.models.families import UNCONDITIONAL, family_name
from slimfusion.models.io import replace_folder
from slimfusion.models.meta import get_meta
from slimfusion.pipeline_sample import check_conditions, conditions_of, sample_pipeline
from slimfusion.pipelines import denoiser_of, is_pipeline_object
from slimfusion.skip.use import sampling_plan

__all__ = ["SampleConfig", "image_generator", "make_scheduler", "sample", "sample_to_folder", "save_samples"]
# Classifier-free guidance of conditional pipelines: 2 gives the digits built-ins >= 99.5% prompt / class accuracy
# with the best FD of the scales measured (benchmarks/results/conditional_builtins.md); SD's 7.5 over-saturates them.
DEFAULT_GUIDANCE = 2.0
SAMPLING_FILE = "sampling.json"


class SampleConfig(BaseModel):
    """How to sample.

    Args:
        num (`int`, defaults to 64): number of images.
        steps (`int`, defaults to 50): denoising steps.
        scheduler (`str`, defaults to "ddim"): a solver of `slimfusion.diffusion.SOLVERS`: "ddim" (deterministic,
            eta 0), "ddpm" (ancestral), "dpm++2m", "dpm++3m", "dpm++2m-sde", "unipc", "deis", "euler", "heun", "lcm".
        spacing (`str`, optional): timestep spacing "leading" / "trailing" / "linspace" (default: the solver's own).
        karras (`bool`, defaults to False): Karras sigmas, for the solvers that have them.
        timesteps (`list[int]`, optional): explicit descending timesteps (as diffusers pipelines' `timesteps=`),
            for the solvers whose `set_timesteps` takes them (e.g. lcm, dpm++2m, euler); sets `steps`. E.g. a
            consistency student at 3 steps: [999, 599, 299].
        plan (`str`, optional): a skip plan file to sample with (default: the plan stored in the model, if any).
        no_plan (`bool`, defaults to False): sample without any skip plan, a stored one included.
        seed (`int`, defaults to 0): base seed; image i uses the seed pair (seed, i).
        batch_size (`int`, defaults to 64): images per forward.
        prompts (`list[str]`, optional): text-to-image pipelines: image i gets prompt i mod len(prompts).
        class_labels (`list[int]`, optional): class-conditional (DiT) pipelines: image i gets label i mod len.
        guidance (`float`, defaults to 2.0): classifier-free guidance scale of conditional pipelines (1: off).
        negative_prompt (`str`, optional): text-to-image: the prompt guidance steers away from (default: empty).
    """

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    num: int = Field(64, ge=1)
    steps: int = Field(50, ge=1, le=1000)
    scheduler: str = "ddim"
    spacing: Literal["leading", "trailing", "linspace"] | None = None
    karras: bool = False
    timesteps: list[int] | None = Field(None, min_length=1)
    plan: str | None = None
    no_plan: bool = False
    seed: int = Field(0, ge=0)
    batch_size: int = Field(64, ge=1)
    prompts: list[str] | None = Field(None, min_length=1)
    class_labels: list[int] | None = Field(None, min_length=1)
    guidance: float = Field(DEFAULT_GUIDANCE, ge=0)
    negative_prompt: str | None = None

    _known_solver = field_validator("scheduler")(classmethod(lambda cls, value: known_solver(value)))

    @model_validator(mode="after")
    def _steps_of_timesteps(self) -> SampleConfig:
        return steps_of_timesteps(self)

    @property
    def conditional(self) -> bool:
        return self.prompts is not None or self.class_labels is not None


def steps_of_timesteps(config, set_steps: bool = True):
    """A config's `steps` set from its explicit `timesteps` (checked: descending, >= 0, agreeing with `steps`)."""
    ts = config.timesteps
    if ts is None:
        return config
    if min(ts) < 0 or any(a <= b for a, b in zip(ts, ts[1:], strict=False)):
        raise ValueError(f"--timesteps {','.join(map(str, ts))}: give distinct timesteps >= 0 in descending order")
    if "steps" in config.model_fields_set and config.steps != len(ts):
        raise ValueError(f"--steps {config.steps} disagrees with the {len(ts)} --timesteps given")
    if set_steps:
        config.steps = len(ts)  # marks `steps` as set: a step-distilled model's own step count does not override it
    return config


@torch.no_grad()
def sample(model, config: SampleConfig, indices: Sequence[int] | None = None, progress: bool = True) -> torch.Tensor:
    """Generate images [N, C, H, W] in [-1, 1].

    Args:
        model (`nn.Module` or pipeline): an unconditional `UNet2DModel` denoiser (epsilon prediction), or a diffusers
            text-to-image / DiT pipeline (see `slimfusion.load_pipeline`), sampled through the pipeline itself.
        config (`SampleConfig`): how many, how many steps, which scheduler, which seed.
        indices (`Sequence[int]`, optional): which image indices to make (default: all `range(config.num)`); lets
            several processes make disjoint slices of one seeded set.
        progress (`bool`, defaults to True): show a progress bar.

    A skip plan applies as `config.plan` / `config.no_plan` say (by default the one stored in the model).
    """
    config = with_own_sampler(model, config)
    explicit = config.timesteps is not None
    with sampling_plan(model, config.plan, config.no_plan, config.scheduler, config.steps, explicit):
        if is_pipeline_object(model):
            return sample_pipeline(model, config, indices, progress)
        return _sample_denoiser(model, config, indices, progress)


SAMPLER_FIELDS = ("scheduler", "steps", "spacing", "guidance")  # a student's own; explicit timesteps are the caller's


def with_own_sampler(model, config: SampleConfig) -> SampleConfig:
    """`config` with a step-distilled model's own sampler (solver, steps, spacing, guidance) for every one of those
    fields the caller did not set; other models keep the defaults (DDIM, 50 steps)."""
    stored = stored_sampler(denoiser_of(model))
    if not stored:
        return config
    update = {k: stored[k] for k in SAMPLER_FIELDS if k not in config.model_fields_set and k in stored}
    return config.model_copy(update=update)


def _sample_denoiser(model, config: SampleConfig, indices: Sequence[int] | None, progress: bool) -> torch.Tensor:
    if config.conditional:
        raise ConfigError("prompts / class labels need a pipeline (a folder with model_index.json)")
    if family_name(model) not in UNCONDITIONAL:
        raise ConfigError(
            f"{family_name(model)} alone cannot be sampled: pass its pipeline folder (text encoder, VAE, scheduler)"
        )
    indices = list(range(config.num)) if indices is None else list(indices)
    model.eval()
    side = model.config.sample_size
    side = side[0] if isinstance(side, (tuple, list)) else side
    shape = (1, model.config.in_channels, side, side)
    scheduler = make_scheduler(model, config.scheduler, config.steps, config.spacing, config.karras, config.timesteps)
    predict = predictor(model)

    def denoise(chunk: list[int], gens: list[torch.Generator]) -> torch.Tensor:
        x = start_noise(shape[1:], gens)
        return run_chain(scheduler, x, predict, gens).clamp(-1, 1)

    out = in_batches(indices, config.seed, config.batch_size, denoise, progress)
    return out if len(out) else torch.empty(0, *shape[1:])


def save_samples(images: torch.Tensor, out: str | Path, indices: Sequence[int] | None = None) -> Path:
    """Write one PNG per image (`sample_00000.png`, named by index), `grid.png` and `samples.npz` (uint8 NHWC)."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    indices = list(range(len(images))) if indices is None else list(indices)
    arrays = to_uint8(images)
    for i, arr in zip(indices, arrays, strict=True):
        save_image(arr, folder / f"sample_{i:05d}.png")
    save_image(make_grid(images[:256]), folder / "grid.png", scale=max(1, 256 // (images.shape[-1] * 8)))
    write_samples_file(arrays, indices, folder)
    return folder


def write_samples_file(arrays: np.ndarray, indices: Sequence[int], folder: Path, record: dict | None = None) -> None:
    """`samples.npz` (uint8 NHWC images and their indices) and, with a record, `sampling.json`: what `load_samples`
    reads (and `evaluate` / `compare` take as a samples folder)."""
    np.savez(folder / "samples.npz", images=arrays, indices=np.asarray(indices, dtype=np.int64))
    if record is not None:
        (folder / SAMPLING_FILE).write_text(json.dumps(record, indent=2))


def shard_indices(num: int, batch_size: int, rank: int, world: int) -> list[int]:
    """The image indices of process `rank` of `world`: a contiguous run of whole batches.

    Whole batches, so every image is made in a batch of the same composition as in a single-process run.
    """
    batches = [list(range(i, min(i + batch_size, num))) for i in range(0, num, batch_size)]
    per, extra = divmod(len(batches), world)
    first = rank * per + min(rank, extra)
    mine = batches[first : first + per + (1 if rank < extra else 0)]
    return [i for batch in mine for i in batch]


def sample_to_folder(model, config: SampleConfig, out: str | Path, overwrite: bool = False) -> dict:
    """Sample `config.num` images into `out` (PNGs, grid.png, samples.npz), sharded across Accelerate processes.

    Under `accelerate launch` every process makes a disjoint slice of the seeded indices; the main process merges
    them, so the folder equals the single-process result. The folder appears complete or not at all.

    Returns:
        {"num", "seconds", "images_per_s", "processes"} (measured on the main process, all shards included).
    """
    target = Path(out)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists; pass --overwrite to replace it")
    config = with_own_sampler(model, config)  # what sampling.json records is what ran
    if is_pipeline_object(model):
        check_conditions(model, config)  # before any folder exists
    state = PartialState(cpu=not torch.cuda.is_available())
    partial = target.parent / f".{target.name}.partial"
    if state.is_main_process:
        if partial.is_symlink() or partial.is_file():
            partial.unlink()  # never write through a link planted at the working folder's name
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    state.wait_for_everyone()
    start = time.perf_counter()
    mine = shard_indices(config.num, config.batch_size, state.process_index, state.num_processes)
    try:
        images = sample(model.to(state.device), config, indices=mine, progress=state.is_local_main_process)
    except BaseException:
        if state.is_main_process:
            shutil.rmtree(partial, ignore_errors=True)  # a failed run leaves nothing behind
        raise
    arrays = to_uint8(images)
    for i, arr in zip(mine, arrays, strict=True):
        save_image(arr, partial / f"sample_{i:05d}.png")
    np.savez(partial / f"shard-{state.process_index}.npz", images=arrays, indices=np.asarray(mine, dtype=np.int64))
    state.wait_for_everyone()
    seconds = time.perf_counter() - start
    if state.is_main_process:
        own = stored_sampler(denoiser_of(model)) is not None
        record = config.model_dump() | {
            "model": source_of(model), "processes": state.num_processes, "own_sampler": own
        }  # fmt: skip
        _merge_shards(partial, state.num_processes, config, record)
        replace_folder(partial, target)  # the same atomic swap as model folders
    state.wait_for_everyone()
    return {
        "num": config.num,
        "seconds": seconds,
        "images_per_s": config.num / seconds,
        "processes": state.num_processes,
    }


def source_of(model) -> str | None:
    """Where a model or pipeline was loaded from (recorded with its samples)."""
    if is_pipeline_object(model):
        return getattr(model, "slimfusion_source", None)
    return get_meta(model).get("source")


def _merge_shards(folder: Path, shards: int, config: SampleConfig, record: dict) -> None:
    parts = [np.load(folder / f"shard-{r}.npz") for r in range(shards)]
    indices = np.concatenate([p["indices"] for p in parts])
    arrays = np.concatenate([p["images"] for p in parts])
    order = np.argsort(indices)
    write_samples_file(arrays[order], indices[order], folder, record)
    for r in range(shards):
        (folder / f"shard-{r}.npz").unlink()
    grid_images = torch.from_numpy(arrays[order][:256]).permute(0, 3, 1, 2).float() / 127.5 - 1
    save_image(make_grid(grid_images), folder / "grid.png", scale=max(1, 256 // (arrays.shape[1] * 8)))
    if config.conditional:
        labels = [str(c) for c in conditions_of(config, indices[order].tolist())]
        labelled_grid(grid_images, labels[: len(grid_images)]).save(folder / "grid.png")


def load_samples(folder: str | Path) -> tuple[torch.Tensor, dict]:
    """Images [N, C, H, W] in [-1, 1] and the sampling record of a folder written by `sample_to_folder`."""
    path = Path(folder)
    file = path / "samples.npz"
    if not file.exists():
        raise NotAModelError(f"{path} holds no samples.npz (not a samples folder)")
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays, indices = data["images"], data["indices"]
    except Exception as exc:  # truncated zip, missing key, wrong dtype: one problem for the user
        raise CorruptFileError(f"{file}: unreadable samples file ({type(exc).__name__})") from exc
    record = json.loads((path / SAMPLING_FILE).read_text()) if (path / SAMPLING_FILE).exists() else {}
    record["indices"] = indices.tolist()
    images = torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 127.5 - 1
    return images, record
