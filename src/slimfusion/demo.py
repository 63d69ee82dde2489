"""`slimfusion demo`: compress -> recover -> evaluate -> report, end to end on builtin:digits-ddpm, in minutes.

Prunes the built-in model to about half its MACs with diff-pruning and with magnitude, fine-tunes each briefly with
distillation from the original, samples every model from the same noise, measures cost / FD / SSIM / PSNR, and
writes a run folder (models, samples, results.json, report.md, report.html).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from slimfusion.data import load_images
from slimfusion.metrics.consistency import psnr, ssim
from slimfusion.metrics.cost import count_macs, count_params, interleaved_latency
from slimfusion.metrics.fd import digit_features, feature_stats, frechet_distance
from slimfusion.models.io import load, save
from slimfusion.models.meta import history
from slimfusion.prune import StructuralConfig, prune
from slimfusion.report import RESULTS_FILE, write_report
from slimfusion.sample import SampleConfig, sample, save_samples
from slimfusion.train import FinetuneConfig, finetune

DEMO_MODEL = "builtin:digits-ddpm"
DEMO_RATIO = 0.25  # ~56% of the MACs of builtin:digits-ddpm (GroupNorm groups of 4 / 8 channels lose 1 / 2)
DEMO_METHODS = {
    "diff-pruning": {"method": "diff-pruning", "threshold": 0.05, "batch_size": 16},
    "magnitude": {"method": "magnitude"},
}


def run_demo(
    out: Path, num: int = 256, steps: int = 50, finetune_steps: int = 300, progress: bool = True
) -> dict[str, Any]:
    """Run the demo into `out` and return its results (also written to `out/results.json`).

    The run is built in a hidden sibling folder and moved into place at the end (an earlier demo is replaced).
    """
    import shutil

    from slimfusion.models.io import replace_folder

    target = Path(out)
    out = target.parent / f".{target.name}.partial"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    original = load(DEMO_MODEL)
    train = load_images("digits", 16, 1)
    reference = feature_stats(digit_features(load_images("digits:all", 16, 1)))
    sample_config = SampleConfig(num=num, steps=steps, seed=0, batch_size=128)
    models = {"original": original}
    for name, fields in DEMO_METHODS.items():
        student = load(DEMO_MODEL)
        prune(student, StructuralConfig(ratio=DEMO_RATIO, **fields), data=train, progress=progress)
        config = FinetuneConfig(steps=finetune_steps, distill=0.5)
        finetune(student, train, config, teacher=original, progress=progress)
        save(student, out / "models" / name, overwrite=True)
        models[f"{name} + finetune"] = student
    latency = interleaved_latency(models, batch=1, repeats=20)
    rows, base_images = [], None
    for name, model in models.items():
        t0 = time.perf_counter()
        images = sample(model, sample_config, progress=progress)
        rate = num / (time.perf_counter() - t0)
        folder = Path("samples") / name.split()[0]
        save_samples(images, out / folder)
        base_images = images if base_images is None else base_images
        metrics = {
            "params": count_params(model),
            "macs": count_macs(model),
            "latency_ms": 1e3 * latency[name],
            "images_per_s": rate,
            "fd": frechet_distance(*feature_stats(digit_features(images)), *reference),
            "ssim": ssim(images, base_images),
            "psnr": psnr(images, base_images) if model is not original else None,
        }
        pruned = next((h["effect"] for h in history(model) if h["step"] == "prune"), {})
        rows.append(
            {
                "name": name,
                "metrics": metrics,
                "samples": str(folder),
                "original": model is original,
                "timesteps_used": pruned.get("timesteps_used"),
            }
        )
    results = {
        "title": "slimfusion demo: builtin:digits-ddpm pruned to ~half its MACs and fine-tuned",
        "quality_metric": (
            f"Quality: FD (digits features), an offline stand-in for FID (not FID), of {num} DDIM-{steps} samples vs"
            f" all 1,797 digits; SSIM / PSNR vs the original from identical noise. Pruning ratio {DEMO_RATIO};"
            f" fine-tuning {finetune_steps} steps with output distillation W = 0.5 (the original took 8000)."
        ),
        "notes": [
            f"FD at {num} samples is noisy: benchmarks/results/diffpruning_digits.md measures the noise floor"
            " with 2,000 samples and longer fine-tuning.",
            "Latency: CPU, batch 1, all models measured alternately in one run (median of 20).",
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
