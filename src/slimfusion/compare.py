"""`slimfusion compare`: models or samples side by side, each difference to the first with a 95% interval and a
verdict (better / worse / tie).

Models are sampled with one config, so from identical noise and conditions; their differences are then bootstrapped
paired (metrics/intervals.py). Samples folders from other noise are compared with independent draws. The verdict is
"tie" whenever the interval of (subject - baseline) covers zero: the rule every table and sentence follows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slimfusion.errors import ConfigError
from slimfusion.evaluate import (
    EvaluateConfig,
    QualityInputs,
    check_inputs,
    default_metrics,
    measure_quality,
    resolve_subject,
)
from slimfusion.metrics.cost import count_macs, count_params
from slimfusion.metrics.intervals import method_text

PAIRING_KEYS = ("seed", "indices", "prompts", "class_labels")


def _paired(a: dict, b: dict) -> bool:
    """Same starting noise and conditions for every sample: then one index draw serves both sets."""
    return all(a.get(key) == b.get(key) for key in PAIRING_KEYS)


def compare(
    subjects: list,
    config: EvaluateConfig | None = None,
    ref: str | None = None,
    original: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Compare subjects[1:] with subjects[0] (the baseline) metric by metric.

    Args:
        subjects (`list`): two or more models (folder, builtin:NAME, hub id, or loaded objects) or samples folders.
        config (`EvaluateConfig`, optional): metrics, sampling settings (one for all models) and `resamples`;
            `plan` is not taken (each model samples with its own stored plan unless `no_plan`).
        ref (`str`, optional): reference data or statistics for fd / kd / fid / kid.
        original (`str`, optional): the uncompressed model or its samples, for ssim / psnr of every subject.

    Returns:
        {"baseline", "subjects": [{"name", "num", "metrics", "paired"}], "differences": [{"subject", "index", "metric",
        "difference", "interval", "verdict"}], "interval_method"}.
    """
    config = config or EvaluateConfig()
    if len(subjects) < 2:
        raise ConfigError("compare needs at least two models or samples folders (the first is the baseline)")
    if config.plan is not None:
        raise ConfigError("compare takes no --plan: store a plan in a model folder (skip-plan --out) to compare it")
    resolved = [resolve_subject(s, config, progress) for s in subjects]
    wanted = list(config.metrics) if config.metrics else default_metrics(resolved[0], ref, original)
    wanted = [m for m in wanted if m != "cost"]
    for subject in resolved:
        check_inputs(wanted, subject, ref, original)
    inputs = QualityInputs.of(wanted, config, ref, original, progress)
    qualities = [measure_quality(s, wanted, config, inputs) for s in resolved]
    names = [
        str(s) if isinstance(s, (str, Path)) else r.record.get("model") for s, r in zip(subjects, resolved, strict=True)
    ]
    rows, differences = [], []
    for index, (name, subject, quality) in enumerate(zip(names, resolved, qualities, strict=True)):
        paired = _paired(resolved[0].record, subject.record) and quality.num == qualities[0].num
        metrics = quality.values()
        if subject.model is not None:
            metrics |= {"params": count_params(subject.model), "macs": count_macs(subject.model)}
        rows.append({"name": name, "num": quality.num, "metrics": metrics, "paired": paired})
        if index == 0:
            continue
        for metric, versus in quality.versus(qualities[0], config.resamples, paired).items():
            differences.append({"subject": name, "index": index, "metric": metric} | versus)
    return {
        "baseline": names[0],
        "subjects": rows,
        "differences": differences,
        "skipped": {k: v for q in qualities for k, v in q.skipped.items()},
        "interval_method": method_text(qualities[0].num, config.resamples),
    }
