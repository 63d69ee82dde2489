"""The CLI verbs end to end, as a user runs them: through the entry point, with its exit codes and output."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from unittest import mock

import numpy as np
from conftest import tiny_model

import slimfusion


def run_cli(*args: str, timeout: int = 300, fresh: bool = False) -> subprocess.CompletedProcess:
    """`slimfusion ARGS` through the CLI's entry point: in this process, its stdout / stderr captured and its exit
    code returned (a fresh process spends ~20 s of two cores importing torch and diffusers: paid once per test worker
    here), or in a fresh process (`fresh`: the demo, and what must not share this process's state)."""
    if fresh:
        command = [sys.executable, "-m", "slimfusion.cli", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    from slimfusion.cli import main

    out, err, code = io.StringIO(), io.StringIO(), 0
    with redirect_stdout(out), redirect_stderr(err), mock.patch.object(sys, "argv", ["slimfusion", *args]):
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def test_sample_writes_seeded_pngs_grid_and_npz(tmp_path):
    model = slimfusion.save(tiny_model("UNet2DModel"), tmp_path / "unet")
    for name in ("a", "b"):
        result = run_cli(
            "sample", str(model), "--num", "3", "--steps", "3", "--seed", "7", "--out", str(tmp_path / name)
        )
        assert result.returncode == 0, result.stderr
        assert "img/s" in result.stderr
    a, b = (np.load(tmp_path / n / "samples.npz")["images"] for n in ("a", "b"))
    assert a.shape == (3, 8, 8, 1) and np.array_equal(a, b)
    assert (tmp_path / "a" / "grid.png").exists() and (tmp_path / "a" / "sample_00002.png").exists()


def test_sample_bad_option_is_one_line(tmp_path):
    result = run_cli("sample", "builtin:digits-ddpm", "--steps", "0", "--out", str(tmp_path / "x"))
    assert result.returncode == 2 and result.stderr.strip().startswith("error: --steps")
    assert not (tmp_path / "x").exists()


def test_train_then_info_shows_history(tmp_path):
    out = tmp_path / "trained"
    result = run_cli("train", "--data", "digits", "--steps", "2", "--batch-size", "4", "--out", str(out))
    assert result.returncode == 0, result.stderr
    info = json.loads(run_cli("info", str(out), "--json").stdout)
    assert info["history"][0]["step"] == "train" and info["history"][0]["config"]["steps"] == 2
    assert info["params"] == 1_623_169 and info["file_bytes"] > 6_000_000
    again = run_cli("train", "--steps", "2", "--out", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_info_table_for_builtin():
    result = run_cli("info", "builtin:digits-features")
    assert result.returncode == 0 and "DigitClassifier" in result.stdout and "train_classifier" in result.stdout


def test_prune_then_info(tmp_path):
    out = tmp_path / "pruned"
    result = run_cli("prune", "builtin:digits-ddpm", "--method", "magnitude", "--ratio", "0.3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "params" in result.stdout and "MACs" in result.stdout and "layers changed" in result.stdout
    info = json.loads(run_cli("info", str(out), "--json").stdout)
    step = info["history"][-1]
    assert step["step"] == "prune" and step["config"]["method"] == "magnitude"
    assert info["params"] == step["effect"]["params_after"] < step["effect"]["params_before"] == 1_623_169


def test_prune_bad_ratio_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import pytest

    from slimfusion import cli

    out = tmp_path / "pruned"
    monkeypatch.setattr(
        sys, "argv", ["slimfusion", "prune", "builtin:digits-ddpm", "--ratio", "1.5", "--out", str(out)]
    )
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith("error: --ratio") and "\n" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_demo_is_optimize_with_the_pruning_story_as_one_lever(tmp_path):
    out = tmp_path / "demo"
    args = ("demo", "--out", str(out), "--num", "8", "--finetune-steps", "2", "--budget", "200")
    result = run_cli(*args, timeout=900, fresh=True)
    assert result.returncode == 0, result.stderr[-2000:]
    front = json.loads((out / "frontier.json").read_text())
    # every candidate of the space is accounted for: measured (a frontier row) or noted with why not (the budget)
    keys = [r["key"] for r in front["frontier"]] + list(front["notes"])
    journal = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    probed = [json.loads(r["key"]) for r in journal if r["rung"] == "probe"]
    assert {p["prune"]["method"] for p in probed if "prune" in p} == {"diff-pruning", "magnitude"}
    assert {"solver", "cache", "prune"} <= {lever for k in keys for lever in json.loads(k)}
    assert any('"unipc"' in k for k in keys)
    # a slow machine may spend the whole budget on the probes (two prunings trained): then the notes say so
    screened = any(r["rung"] == "screen" for r in front["frontier"])
    assert screened or any("budget" in why for why in front["notes"].values()), front["notes"]
    assert (out / "report.html").read_text().count("<h1>") == 1 and (out / "frontier.png").exists()
    if front["chosen"] is not None:
        assert slimfusion.load(out / "model").config.sample_size == 16
    assert "faster" in result.stderr or "keep the original" in result.stderr
    assert not list(tmp_path.glob(".demo*")), "the demo folder is moved into place complete"


def test_text_to_image_demo_prunes_the_unet_and_scores_prompt_accuracy(tmp_path, monkeypatch):
    from slimfusion.demo import T2I_MODEL, run_demo
    from slimfusion.pipelines import load_pipeline

    monkeypatch.setattr("slimfusion.demo.T2I_LATENTS", 16)  # the teacher's latents; 1024 in the real demo

    results = run_demo(tmp_path / "t2i", num=4, steps=2, finetune_steps=2, progress=False, model=T2I_MODEL)
    original, *pruned = results["rows"]
    assert original["metrics"]["accuracy"] is not None and len(pruned) == 2
    assert all(r["metrics"]["macs"] < 0.6 * original["metrics"]["macs"] for r in pruned)
    pipe = load_pipeline(tmp_path / "t2i" / "models" / "diff-pruning")  # a pipeline folder that loads again
    assert sum(p.numel() for p in pipe.unet.parameters()) == pruned[0]["metrics"]["params"]
    assert "lr 0.001" in results["quality_metric"] and (tmp_path / "t2i" / "report.html").exists()
