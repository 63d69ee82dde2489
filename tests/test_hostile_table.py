"""Hostile and clumsy input, table-driven: every row ends in exit code 2, exactly one line on stderr (no traceback),
and nothing written. Rows run the real entry point (`slimfusion.cli.main`) in process.

Families (issue 24): missing paths, not-a-model, out-of-range options, corrupt files, hostile recipes, outputs that
must not be replaced, usage errors, and bombs (bounded in time and memory: test_bombs_are_bounded).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_model

from slimfusion.cli import main
from slimfusion.models.io import save

TINY = "tiny"  # a small UNet2DModel saved in each row's folder when a row's argv names it


def run_main(argv: list[str], capsys) -> tuple[int, str, str]:
    old = sys.argv
    sys.argv = ["slimfusion", *argv]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = old
    out = capsys.readouterr()
    return code, out.out, out.err


def _tiny(tmp: Path) -> None:
    save(tiny_model("UNet2DModel"), tmp / TINY)


def _json(name: str, content) -> callable:
    def make(tmp: Path) -> None:
        _tiny(tmp)
        path = tmp / TINY / name
        path.write_text(content if isinstance(content, str) else json.dumps(content))

    return make


def _meta(**fields):
    def make(tmp: Path) -> None:
        _tiny(tmp)
        path = tmp / TINY / "slimfusion.json"
        meta = json.loads(path.read_text()) | fields
        path.write_text(json.dumps(meta))

    return make


def _file(name: str, content: str | bytes):
    def make(tmp: Path) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return make


def _truncated(tmp: Path) -> None:
    _tiny(tmp)
    weights = tmp / TINY / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])


def _huge_config(tmp: Path) -> None:
    _tiny(tmp)
    path = tmp / TINY / "config.json"
    config = json.loads(path.read_text()) | {"block_out_channels": [65536, 131072], "norm_num_groups": 8}
    path.write_text(json.dumps(config))


def _compact_claims(shape: list[int]):
    def make(tmp: Path) -> None:
        from safetensors.torch import load_file, safe_open, save_file

        model = tiny_model("UNet2DModel")
        with torch.no_grad():
            model.conv_in.weight[model.conv_in.weight.abs() < 1].zero_()
        save(model, tmp / TINY, storage="compact")
        file = tmp / TINY / "slimfusion_sparse.safetensors"
        with safe_open(str(file), "pt") as f:
            metadata = f.metadata()
        shapes = json.loads(metadata["shapes"])
        shapes[next(iter(shapes))] = shape
        save_file(load_file(str(file)), str(file), metadata=metadata | {"shapes": json.dumps(shapes)})

    return make


def _sd_pipeline(change):
    def make(tmp: Path) -> None:
        from conftest import tiny_sd_pipeline

        from slimfusion.pipelines import save_pipeline

        save_pipeline(tiny_sd_pipeline(), tmp / "sd")
        change(tmp / "sd")

    return make


def _plan_for_missing_block(tmp: Path) -> None:
    from slimfusion.skip import SkipConfig, save_plan, skip_plan

    _tiny(tmp)
    plan = skip_plan(tiny_model("UNet2DModel"), SkipConfig(method="deepcache", steps=4, interval=2), progress=False)
    save_plan(plan, tmp / "p.json")
    record = json.loads((tmp / "p.json").read_text())
    text = json.dumps(record).replace("mid_block", "no_such_block")
    (tmp / "p.json").write_text(text)


def _integer_weights(tmp: Path) -> None:
    from safetensors.torch import load_file, save_file

    _tiny(tmp)
    file = tmp / TINY / "diffusion_pytorch_model.safetensors"
    state = load_file(str(file))
    state["conv_in.weight"] = state["conv_in.weight"].to(torch.int32)
    save_file(state, str(file))


def _shard_outside(tmp: Path) -> None:
    _tiny(tmp)
    weights = tmp / TINY / "diffusion_pytorch_model.safetensors"
    (tmp / "elsewhere.safetensors").write_bytes(weights.read_bytes())
    weights.unlink()
    index = {"metadata": {}, "weight_map": {"conv_in.weight": "../elsewhere.safetensors"}}
    (tmp / TINY / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))


def _pickle_only(tmp: Path) -> None:
    (tmp / "pk").mkdir()
    (tmp / "pk" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    (tmp / "pk" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")


def _samples_with(record: str):
    def make(tmp: Path) -> None:
        import numpy as np

        (tmp / "s").mkdir()
        np.savez(tmp / "s" / "samples.npz", images=np.zeros((4, 16, 16, 1), dtype=np.uint8))
        (tmp / "s" / "sampling.json").write_text(record)

    return make


def _user_folder(tmp: Path) -> None:
    _tiny(tmp)
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("do not delete")


def _pipeline(index: dict):
    def make(tmp: Path) -> None:
        (tmp / "pipe").mkdir()
        (tmp / "pipe" / "model_index.json").write_text(json.dumps(index))

    return make


def _recipe(text: str):
    return _file("r.yaml", text)


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)

ROWS = [
    # missing paths
    ("info-missing", ["info", "{tmp}/nope"], None),
    ("sample-missing", ["sample", "{tmp}/nope", "--out", "{tmp}/o"], None),
    ("prune-missing", ["prune", "{tmp}/nope", "--out", "{tmp}/o"], None),
    ("evaluate-missing", ["evaluate", "{tmp}/nope", "--metrics", "cost"], None),
    ("evaluate-resamples-0", ["evaluate", "{tmp}/nope", "--resamples", "0"], None),
    ("compare-one-subject", ["compare", "builtin:digits-ddpm"], None),
    ("compare-missing", ["compare", "{tmp}/nope", "{tmp}/nope2", "--ref", "digits"], None),
    ("skip-plan-missing", ["skip-plan", "{tmp}/nope", "--out", "{tmp}/p.json"], None),
    ("quantize-missing", ["quantize", "{tmp}/nope", "--out", "{tmp}/o"], None),
    ("lowrank-missing", ["lowrank", "{tmp}/nope", "--out", "{tmp}/o"], None),
    ("sparsify-missing", ["sparsify", "{tmp}/nope", "--out", "{tmp}/o"], None),
    ("finetune-missing", ["finetune", "{tmp}/nope", "--out", "{tmp}/o"], None),
    ("distill-steps-missing", ["distill-steps", "{tmp}/nope", "--out", "{tmp}/o"], None),
    ("run-missing-recipe", ["run", "{tmp}/nope.yaml", "--out", "{tmp}/o"], None),
    ("report-missing", ["report", "{tmp}/nope"], None),
    ("builtin-unknown", ["info", "builtin:nope"], None),
    # not a model
    ("info-text-file", ["info", "{tmp}/a.txt"], _file("a.txt", "hello")),
    ("info-empty-folder", ["info", "{tmp}/empty"], lambda t: (t / "empty").mkdir()),
    ("info-unknown-class", ["info", "{tmp}/u"], _file("u/config.json", json.dumps({"_class_name": "Nope"}))),
    ("info-config-not-object", ["info", "{tmp}/u"], _file("u/config.json", "[1, 2]")),
    ("info-config-bad-json", ["info", "{tmp}/u"], _file("u/config.json", "{not json")),
    ("info-pickle-only", ["info", "{tmp}/pk"], _pickle_only),
    ("sample-png-folder", ["sample", "{tmp}/p", "--out", "{tmp}/o"], _file("p/x.png", b"\x89PNG")),
    # options out of range
    ("prune-ratio-high", ["prune", "{tmp}/tiny", "--ratio", "1.5", "--out", "{tmp}/o"], _tiny),
    ("prune-ratio-zero", ["prune", "{tmp}/tiny", "--ratio", "0", "--out", "{tmp}/o"], _tiny),
    ("prune-ratio-negative", ["prune", "{tmp}/tiny", "--ratio", "-0.1", "--out", "{tmp}/o"], _tiny),
    ("prune-method-unknown", ["prune", "{tmp}/tiny", "--method", "nope", "--out", "{tmp}/o"], _tiny),
    ("sparsify-sparsity-one", ["sparsify", "{tmp}/tiny", "--sparsity", "1.0", "--out", "{tmp}/o"], _tiny),
    ("lowrank-ratio-high", ["lowrank", "{tmp}/tiny", "--rank-ratio", "2", "--out", "{tmp}/o"], _tiny),
    ("quantize-scheme-unknown", ["quantize", "{tmp}/tiny", "--scheme", "int3", "--out", "{tmp}/o"], _tiny),
    ("sample-num-zero", ["sample", "{tmp}/tiny", "--num", "0", "--out", "{tmp}/o"], _tiny),
    ("sample-steps-zero", ["sample", "{tmp}/tiny", "--steps", "0", "--out", "{tmp}/o"], _tiny),
    ("sample-steps-huge", ["sample", "{tmp}/tiny", "--steps", "5000", "--out", "{tmp}/o"], _tiny),
    ("sample-scheduler-unknown", ["sample", "{tmp}/tiny", "--scheduler", "nope", "--out", "{tmp}/o"], _tiny),
    ("sample-spacing-unknown", ["sample", "{tmp}/tiny", "--spacing", "odd", "--out", "{tmp}/o"], _tiny),
    ("sample-karras-ddim", ["sample", "{tmp}/tiny", "--karras", "--num", "1", "--out", "{tmp}/o"], _tiny),
    ("sample-timesteps-garbage", ["sample", "{tmp}/tiny", "--timesteps", "999,x", "--out", "{tmp}/o"], _tiny),
    ("sample-timesteps-ascending", ["sample", "{tmp}/tiny", "--timesteps", "1,999", "--out", "{tmp}/o"], _tiny),
    ("sample-timesteps-ddim", ["sample", "{tmp}/tiny", "--timesteps", "999,499", "--out", "{tmp}/o"], _tiny),
    (
        "sample-timesteps-past-schedule",
        ["sample", "{tmp}/tiny", "--scheduler", "lcm", "--timesteps", "4000,1", "--out", "{tmp}/o"],
        _tiny,
    ),
    (
        "distill-loss-progressive",
        ["distill-steps", "{tmp}/tiny", "--method", "progressive", "--loss", "pseudo-huber", "--out", "{tmp}/o"],
        _tiny,
    ),
    ("distill-loss-unknown", ["distill-steps", "{tmp}/tiny", "--loss", "l1", "--out", "{tmp}/o"], _tiny),
    ("sample-prompts-unconditional", ["sample", "{tmp}/tiny", "--class-labels", "1", "--out", "{tmp}/o"], _tiny),
    ("sample-labels-garbage", ["sample", "{tmp}/tiny", "--class-labels", "a,b", "--out", "{tmp}/o"], _tiny),
    ("skip-plan-method-unknown", ["skip-plan", "{tmp}/tiny", "--method", "nope", "--out", "{tmp}/p.json"], _tiny),
    ("finetune-checkpoint-negative", ["finetune", "{tmp}/tiny", "--checkpoint-every", "-1", "--out", "{tmp}/o"], _tiny),
    ("distill-to-steps-zero", ["distill-steps", "{tmp}/tiny", "--to-steps", "0", "--out", "{tmp}/o"], _tiny),
    ("distill-to-steps-above-teacher", ["distill-steps", "{tmp}/tiny", "--to-steps", "60", "--out", "{tmp}/o"], _tiny),
    (
        "distill-progressive-not-power-of-two",
        ["distill-steps", "{tmp}/tiny", "--method", "progressive", "--teacher-steps", "24", "--out", "{tmp}/o"],
        _tiny,
    ),
    ("distill-method-unknown", ["distill-steps", "{tmp}/tiny", "--method", "nope", "--out", "{tmp}/o"], _tiny),
    ("distill-guidance-unconditional", ["distill-steps", "{tmp}/tiny", "--guidance", "3", "--out", "{tmp}/o"], _tiny),
    # corrupt files
    ("weights-truncated", ["info", "{tmp}/tiny"], _truncated),
    ("meta-bad-json", ["info", "{tmp}/tiny"], _json("slimfusion.json", "{oops")),
    ("meta-history-string", ["info", "{tmp}/tiny"], _meta(history="not a list")),
    ("meta-overrides-list", ["info", "{tmp}/tiny"], _meta(shape_overrides=[1, 2])),
    ("meta-storage-unknown", ["info", "{tmp}/tiny"], _meta(storage="zip")),
    ("meta-future-format", ["info", "{tmp}/tiny"], _meta(format_version=99)),
    ("meta-sampler-garbage", ["sample", "{tmp}/tiny", "--out", "{tmp}/o"], _meta(sampler={"scheduler": 3})),
    ("config-bad-json", ["info", "{tmp}/tiny"], _json("config.json", "{oops")),
    ("config-huge-widths", ["info", "{tmp}/tiny"], _huge_config),
    (
        "config-bad-block-type",
        ["info", "{tmp}/tiny"],
        _json(
            "config.json",
            json.dumps(
                {
                    "_class_name": "UNet2DModel",
                    "down_block_types": ["NopeBlock2D"],
                    "up_block_types": ["UpBlock2D"],
                    "block_out_channels": [8],
                }
            ),
        ),
    ),
    ("compact-claims-huge-shape", ["info", "{tmp}/tiny"], _compact_claims([50000, 50000])),
    ("compact-claims-negative-shape", ["info", "{tmp}/tiny"], _compact_claims([-1, 4])),
    ("meta-overrides-not-attrs", ["info", "{tmp}/tiny"], _meta(shape_overrides={"conv_in": [3, 1]})),
    ("meta-overrides-unknown-module", ["info", "{tmp}/tiny"], _meta(shape_overrides={"nope": {"out_channels": 3}})),
    ("plan-bad-json", ["sample", "{tmp}/tiny", "--plan", "{tmp}/p.json", "--out", "{tmp}/o"], _tiny),
    ("samples-bad-record", ["evaluate", "{tmp}/s", "--original", "{tmp}/s", "--metrics", "ssim"], _samples_with("{")),
    ("samples-bad-npz", ["evaluate", "{tmp}/s2", "--metrics", "fd", "--ref", "digits"], _file("s2/samples.npz", "x")),
    ("pipeline-index-bad-json", ["info", "{tmp}/pipe"], _file("pipe/model_index.json", "{")),
    ("pipeline-unknown-class", ["sample", "{tmp}/pipe", "--out", "{tmp}/o"], _pipeline({"unet": ["nope", "Nope"]})),
    (
        "pipeline-scheduler-corrupt",
        ["info", "{tmp}/sd"],
        _sd_pipeline(lambda f: (f / "scheduler" / "scheduler_config.json").write_text("{")),
    ),
    (
        "pipeline-tokenizer-missing",
        ["sample", "{tmp}/sd", "--out", "{tmp}/o", "--prompts", "{tmp}/sd/model_index.json"],
        _sd_pipeline(lambda f: __import__("shutil").rmtree(f / "tokenizer")),
    ),
    (
        "plan-names-missing-block",
        ["sample", "{tmp}/tiny", "--plan", "{tmp}/p.json", "--out", "{tmp}/o"],
        _plan_for_missing_block,
    ),
    ("weights-integer-dtype", ["info", "{tmp}/tiny"], _integer_weights),
    ("meta-removed-modules-not-lists", ["info", "{tmp}/tiny"], _meta(removed_modules=["down_blocks.0"])),
    ("meta-removed-modules-bogus", ["info", "{tmp}/tiny"], _meta(removed_modules=[["down_blocks.9.nothing"]])),
    ("shard-index-outside-folder", ["info", "{tmp}/tiny"], _shard_outside),
    ("stats-missing-data", ["stats", "{tmp}/nope", "--out", "{tmp}/s.npz"], None),
    # hostile recipes
    ("recipe-yaml-syntax", ["run", "{tmp}/r.yaml", "--out", "{tmp}/o"], _recipe("model: [unclosed")),
    ("recipe-not-mapping", ["run", "{tmp}/r.yaml", "--out", "{tmp}/o"], _recipe("- just\n- a list\n")),
    ("recipe-unknown-verb", ["run", "{tmp}/r.yaml", "--out", "{tmp}/o"], _recipe("model: m\nsteps:\n  - nope: {}\n")),
    (
        "recipe-unknown-option",
        ["run", "{tmp}/r.yaml", "--out", "{tmp}/o"],
        _recipe("model: m\nsteps:\n  - prune: {rattio: 0.2}\n"),
    ),
    (
        "recipe-value-as-flag",
        ["run", "{tmp}/r.yaml", "--out", "{tmp}/o"],
        _recipe('model: "--help"\nsteps:\n  - quantize: {scheme: bf16}\n'),
    ),
    ("recipe-alias-bomb", ["run", "{tmp}/r.yaml", "--out", "{tmp}/o"], _recipe(ALIAS_BOMB)),
    ("recipe-huge", ["run", "{tmp}/r.yaml", "--out", "{tmp}/o"], _recipe("# " + "x" * (2 << 20) + "\nmodel: m\n")),
    ("recipe-empty-steps", ["run", "{tmp}/r.yaml", "--out", "{tmp}/o"], _recipe("model: m\nsteps: []\n")),
    (
        "recipe-python-tag",
        ["run", "{tmp}/r.yaml", "--out", "{tmp}/o"],
        _recipe("model: !!python/object/apply:os.system ['touch pwned']\nsteps: []\n"),
    ),
    # outputs that must not be replaced
    ("prune-out-exists", ["prune", "{tmp}/tiny", "--out", "{tmp}/mine"], _user_folder),
    ("quantize-out-exists", ["quantize", "{tmp}/tiny", "--out", "{tmp}/mine"], _user_folder),
    ("sample-out-exists", ["sample", "{tmp}/tiny", "--out", "{tmp}/mine", "--num", "1"], _user_folder),
    ("distill-out-exists", ["distill-steps", "{tmp}/tiny", "--out", "{tmp}/mine"], _user_folder),
    ("lowrank-out-exists", ["lowrank", "{tmp}/tiny", "--out", "{tmp}/mine"], _user_folder),
    ("sparsify-out-exists", ["sparsify", "{tmp}/tiny", "--out", "{tmp}/mine"], _user_folder),
    ("finetune-out-exists", ["finetune", "{tmp}/tiny", "--out", "{tmp}/mine"], _user_folder),
    ("train-out-exists", ["train", "--out", "{tmp}/mine"], _user_folder),
    ("run-out-foreign", ["run", "{tmp}/r.yaml", "--out", "{tmp}/mine"], _user_folder),
    ("skip-plan-out-exists", ["skip-plan", "{tmp}/tiny", "--out", "{tmp}/mine/notes.txt"], _user_folder),
    ("sample-out-is-file", ["sample", "{tmp}/tiny", "--out", "{tmp}/a.txt", "--num", "1"], _file("a.txt", "keep")),
    # usage errors
    ("usage-unknown-option", ["sample", "--bogus"], None),
    ("usage-missing-argument", ["prune"], None),
    ("usage-unknown-command", ["prunee"], None),
    ("usage-bad-int", ["sample", "{tmp}/tiny", "--num", "many", "--out", "{tmp}/o"], _tiny),
]


def _listing(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*") if not p.is_symlink()}


@pytest.mark.parametrize("name,argv,setup", ROWS, ids=[r[0] for r in ROWS])
def test_hostile_row(tmp_path, capsys, monkeypatch, name, argv, setup):
    monkeypatch.chdir(tmp_path)
    if setup is not None:
        setup(tmp_path)
    if name == "run-out-foreign":
        (tmp_path / "r.yaml").write_text("model: builtin:digits-ddpm\nsteps:\n  - quantize: {scheme: bf16}\n")
    before = _listing(tmp_path)
    capsys.readouterr()
    code, out, err = run_main([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code == 2, f"exit {code}; stderr: {err[-2000:]}"
    assert "Traceback" not in err and len(lines) == 1, f"stderr is not one line:\n{err[-2000:]}"
    assert _listing(tmp_path) == before, "something was written or changed"
    assert not (tmp_path / "pwned").exists()


def test_at_least_sixty_rows():
    assert len(ROWS) >= 60


@pytest.mark.parametrize("bomb", ["alias", "config", "compact"])
def test_bombs_are_bounded(tmp_path, capsys, bomb):
    """The nested-alias recipe, a config of absurd widths and compact metadata claiming 2.5e9 elements each end in one
    line within 10 s and without raising the process's peak memory by 1 GB."""
    if bomb == "alias":
        (tmp_path / "r.yaml").write_text(ALIAS_BOMB)
        argv = ["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "o")]
    else:
        (_huge_config if bomb == "config" else _compact_claims([50000, 50000]))(tmp_path)
        argv = ["info", str(tmp_path / TINY)]
    start, peak = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, _, err = run_main(argv, capsys)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert time.perf_counter() - start < 10 and grown_kib < 1 << 20


def test_leftovers_of_a_killed_write_are_cleaned_by_the_next_one(tmp_path):
    for leftover in (".m.tmp-1a2b3c4d", ".m.old-5e6f7a8b"):
        (tmp_path / leftover).mkdir()
        (tmp_path / leftover / "weights").write_text("half")
    (tmp_path / ".other.tmp-1a2b3c4d").mkdir()  # another destination's: not ours to touch
    save(tiny_model("UNet2DModel"), tmp_path / "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-1a2b3c4d", "m"]


def test_a_failing_disk_is_one_typed_line(tmp_path, capsys, monkeypatch):
    """Fault injection: the final rename fails as on a full disk; the API raises OutputError, the CLI prints one line
    and the user's earlier folder is intact."""
    import errno

    from slimfusion.errors import OutputError

    _tiny(tmp_path)

    def full(self, target):
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "rename", full)
    with pytest.raises(OutputError, match="No space left"):
        save(tiny_model("UNet2DModel"), tmp_path / "out")
    code, _, err = run_main(["quantize", str(tmp_path / TINY), "--out", str(tmp_path / "q")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "No space left" in err
    monkeypatch.undo()
    assert not (tmp_path / "out").exists() and not (tmp_path / "q").exists()
    assert [p.name for p in tmp_path.iterdir()] == [TINY]


API_ROWS = [r for r in ROWS if r[1][0] in ("info", "run") and not r[0].startswith("usage")]


@pytest.mark.parametrize("name,argv,setup", API_ROWS, ids=[r[0] for r in API_ROWS])
def test_the_api_raises_a_typed_error(tmp_path, monkeypatch, name, argv, setup):
    """The same rows through the Python API (load / run_recipe): a SlimfusionError, never a bare library error."""
    import slimfusion
    from slimfusion.errors import SlimfusionError

    monkeypatch.chdir(tmp_path)
    if setup is not None:
        setup(tmp_path)
    if name == "run-out-foreign":
        (tmp_path / "r.yaml").write_text("model: builtin:digits-ddpm\nsteps:\n  - quantize: {scheme: bf16}\n")
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    with pytest.raises(SlimfusionError):
        if args[0] == "info":
            slimfusion.load(args[1])
        else:
            slimfusion.run_recipe(args[1], args[3])
