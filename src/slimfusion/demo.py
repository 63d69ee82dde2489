"""`slimfusion demo`: the product end to end on a built-in, in minutes.

On builtin:digits-ddpm (default) the demo is `slimfusion optimize`: the training-free levers (solver x evaluations,
bf16, DeepCache) and width pruning with a short recovery (Diff-Pruning and magnitude, the seed story, as one lever
with two settings) searched within a budget, the fastest composition that ties the original confirmed on fresh
noise; the run folder holds the chosen model, the frontier and report.html with the answer first.

On builtin:digits-t2i (`--model`, the text-to-image story): prunes the UNet with diff-pruning and with magnitude,
recovers each data-free with distillation from the original, samples every model from the same noise, measures cost /
FD / accuracy / SSIM / PSNR, and writes a run folder (models, samples, results.json, report.md, report.html).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from slimfusion.data.prompts import WORDS
from slimfusion.errors import ConfigError
from slimfusion.metrics.cost import count_macs, count_params, interleaved_latency
from slimfusion.models.io import replace_folder
from slimfusion.models.meta import history
from slimfusion.optimize import OptimizeConfig, optimize
from slimfusion.pipelines import denoiser_of, load_pipeline, save_pipeline
from slimfusion.prune import StructuralConfig, prune
from slimfusion.prune.conditioning import encode_prompts
from slimfusion.quality import References, quality_of
from slimfusion.report import RESULTS_FILE, write_report
from slimfusion.sample import SampleConfig, sample, save_samples
from slimfusion.train import FinetuneConfig, finetune
from slimfusion.train.conditional_data import distill_trainset

DEMO_MODEL = "builtin:digits-ddpm"
DEMO_RATIO = 0.25  # ~56% of the MACs of builtin:digits-ddpm (GroupNorm groups of 4 / 8 channels lose 1 / 2)
DEMO_METHODS = {
    "diff-pruning": {"method": "diff-pruning", "threshold": 0.05, "batch_size": 16},
    "magnitude": {"method": "magnitude"},
}


T2I_MODEL = "builtin:digits-t2i"
T2I_RATIO = 0.2  # 54% of the UNet's MACs; 0.3 keeps 37% and needs ~4000 recovery steps (docs/recovery.md)
T2I_LR = 1e-3  # data-free recovery at the default 2e-4 is too slow for a 10-minute demo (docs/recovery.md)
T2I_SAMPLE_STEPS = 25  # DDIM-25, as the recovery chain in docs/recovery.md evaluates
T2I_LATENTS = 1024  # teacher latents generated once for both students
T2I_FINETUNE_STEPS = 800  # 7.6 min for the whole demo measured on 2 CPU cores: 66% prompt accuracy (docs/recovery.md)
T2I_PROMPTS = [f"a handwritten {w}" for w in WORDS] + [f"the digit {d}" for d in range(10)]
DEMOS = (DEMO_MODEL, T2I_MODEL)


@dataclass
class _Models:
    """What a demo compressed: name -> what `sample` takes (model or pipeline) and its denoiser (for cost)."""

    sampleable: dict[str, Any] = field(default_factory=dict)
    denoisers: dict[str, nn.Module] = field(default_factory=dict)

    def add(self, name: str, sampleable: Any, denoiser: nn.Module) -> None:
        self.sampleable[name], self.denoisers[name] = sampleable, denoiser


def demo_search(num: int = 512, finetune_steps: int = 300, budget: float = 480) -> OptimizeConfig:
    """The demo's search: `num` fresh confirmation samples (a quarter of them, at least 8, screen every candidate),
    pruning recovered for `finetune_steps`; torch.compile left out (its warm-up under a cache's hooks takes minutes
    on two cores: `slimfusion optimize` searches it)."""
    return OptimizeConfig(
        budget=budget,
        levers=["solver", "precision", "cache", "prune"],
        data="digits",
        knobs={
            "solver.scheduler": ["ddim", "unipc", "dpm++2m"],
            "solver.steps": [5, 6, 8, 10, 15, 25],
            "prune.method": list(DEMO_METHODS),
            "prune.ratio": [DEMO_RATIO],
            "prune.recovery_steps": [finetune_steps],
        },
        screen_num=max(8, num // 4),
        mid_num=0,
        confirm_num=num,
        confirm=2,
        rounds=3,
    )


def run_optimize_demo(out: Path, num: int, finetune_steps: int, budget: float, progress: bool) -> dict[str, Any]:
    """`slimfusion optimize` on builtin:digits-ddpm into `out` (built beside it, moved into place when done)."""
    target = Path(out)
    partial = target.parent / f".{target.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    start = time.perf_counter()
    result = optimize(DEMO_MODEL, demo_search(num, finetune_steps, budget), out=partial, progress=progress)
    replace_folder(partial, target)
    return result | {"report_html": str(target / "report.html"), "wall_s": round(time.perf_counter() - start, 1)}


def _t2i_models(out: Path, finetune_steps: int, progress: bool) -> _Models:
    """builtin:digits-t2i's UNet pruned twice (diff-pruning on its own samples of the prompts, magnitude) and
    recovered data-free: the original pipeline generates the training latents, the student distils from it."""
    original = load_pipeline(T2I_MODEL)
    data = distill_trainset(original, T2I_PROMPTS, num=T2I_LATENTS, progress=progress)
    conditions = encode_prompts(T2I_MODEL, T2I_PROMPTS)
    models = _Models()
    models.add("original", original, denoiser_of(original))
    for name, fields in DEMO_METHODS.items():
        pipe = load_pipeline(T2I_MODEL)
        calibration = conditions if fields["method"] == "diff-pruning" else None
        prune(denoiser_of(pipe), StructuralConfig(ratio=T2I_RATIO, **fields), conditions=calibration, progress=progress)
        config = FinetuneConfig(steps=finetune_steps, lr=T2I_LR)
        finetune(denoiser_of(pipe), data, config, teacher=denoiser_of(original), progress=progress)
        save_pipeline(pipe, out / "models" / name, overwrite=True)
        models.add(f"{name} + finetune", pipe, denoiser_of(pipe))
    return models


def _recovery_text(student: nn.Module) -> str:
    """How the students were recovered, read from the fine-tuning step in a student's history (what ran)."""
    config = next(h["config"] for h in history(student) if h["step"] == "finetune")
    source = f"{T2I_LATENTS} latents the original made from the prompts (data-free)"
    return (
        f"fine-tuning {config['steps']} steps on {source}, lr {config['lr']:g}, output distillation W ="
        f" {config['distill']:g} from the original"
    )


def run_demo(
    out: Path,
    num: int | None = None,
    steps: int | None = None,
    finetune_steps: int | None = None,
    progress: bool = True,
    model: str = DEMO_MODEL,
    budget: float = 480,
) -> dict[str, Any]:
    """Run the demo into `out` and return its results.

    Args:
        model (`str`, defaults to "builtin:digits-ddpm"): the optimize demo; "builtin:digits-t2i" for the
            text-to-image pruning story (results also in `out/results.json`).
        num (`int`, *optional*): DDPM: fresh confirmation samples (512); text-to-image: samples per model (256).
        steps (`int`, *optional*): text-to-image: DDIM steps of the evaluation samples (25).
        finetune_steps (`int`, *optional*): per pruned model; 300 for the DDPM, 800 for text-to-image.
        budget (`float`, defaults to 480): DDPM: the search's budget in seconds.

    The run is built in a hidden sibling folder and moved into place at the end (an earlier demo is replaced).
    """
    if model not in DEMOS:
        raise ConfigError(f"the demo runs on {' or '.join(DEMOS)}, not {model}")
    if model == DEMO_MODEL:
        return run_optimize_demo(out, num or 512, finetune_steps or 300, budget, progress)
    num = num or 256
    steps = steps or T2I_SAMPLE_STEPS
    finetune_steps = finetune_steps or T2I_FINETUNE_STEPS
    target = Path(out)
    out = target.parent / f".{target.name}.partial"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    models = _t2i_models(out, finetune_steps, progress)
    references = References("digits:all")
    prompts = {"prompts": T2I_PROMPTS}
    sample_config = SampleConfig(num=num, steps=steps, seed=0, batch_size=128, **prompts)
    latency = interleaved_latency(models.denoisers, batch=1, repeats=20)
    record = {"indices": list(range(num)), **prompts}
    rows, base_images = [], None
    for name, subject in models.sampleable.items():
        denoiser = models.denoisers[name]
        t0 = time.perf_counter()
        images = sample(subject, sample_config, progress=progress)
        rate = num / (time.perf_counter() - t0)
        folder = Path("samples") / name.split()[0]
        save_samples(images, out / folder)
        is_original = base_images is None
        base_images = images if is_original else base_images
        wanted = ["fd", "kd"] + ([] if is_original else ["ssim", "psnr"]) + ["accuracy"]
        quality = quality_of(images, record, wanted, references, base=base_images)
        metrics = {
            "params": count_params(denoiser),
            "macs": count_macs(denoiser),
            "latency_ms": 1e3 * latency[name],
            "images_per_s": rate,
        } | quality.values()
        pruned = next((h["effect"] for h in history(denoiser) if h["step"] == "prune"), {})
        rows.append(
            {
                "name": name,
                "metrics": metrics,
                "intervals": quality.intervals(),
                "samples": str(folder),
                "original": is_original,
                "timesteps_used": pruned.get("timesteps_used"),
            }
        )
    ratio, label = T2I_RATIO, "UNet of builtin:digits-t2i"
    recovery = _recovery_text(next(m for n, m in models.denoisers.items() if n != "original"))
    results = {
        "title": f"slimfusion demo: {label} pruned and fine-tuned",
        "quality_metric": (
            f"Quality: FD and KD (digits features), offline stand-ins for FID / KID (not FID), of {num} DDIM-{steps}"
            f" samples vs all 1,797 digits; SSIM / PSNR vs the original from identical noise"
            " and prompts; prompt accuracy by the digit classifier; in brackets their 95%"
            f" intervals (bootstrap over the samples). Pruning ratio {ratio}; {recovery}."
        ),
        "notes": [
            f"FD at {num} samples is noisy: two rows differ only where their intervals do not overlap; `slimfusion"
            " compare` gives the paired verdict.",
            "Latency: CPU, batch 1, the denoisers measured alternately in one run (median of 20).",
        ],
        "rows": rows,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_FILE).write_text(json.dumps(results, indent=2))
    write_report(out)
    replace_folder(out, target)
    results |= {"report_md": str(target / "report.md"), "report_html": str(target / "report.html")}
    return results
