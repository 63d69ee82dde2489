"""Pickle-free save / load: round trips over every family, shrunk shapes, atomic writes, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import shrink_any
from safetensors.torch import save_file

import slimfusion
from slimfusion.errors import CorruptFileError, FormatVersionError, ModelNotFoundError, NotAModelError
from slimfusion.models.families import example_inputs
from slimfusion.models.io import META_FILE, shape_overrides


def _output(model: torch.nn.Module, seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model(**example_inputs(model, 2))
    return out[0] if isinstance(out, tuple) else (out.sample if hasattr(out, "sample") else out.last_hidden_state)


def test_round_trip_every_family(family_model, tmp_path):
    shrink_any(family_model)
    expected = _output(family_model)
    slimfusion.save(family_model, tmp_path / "m")
    reloaded = slimfusion.load(tmp_path / "m")
    assert torch.equal(_output(reloaded), expected)
    assert shape_overrides(reloaded) == shape_overrides(family_model) != {}


def test_shrunk_model_reloads_identically_in_fresh_process(family_model, tmp_path):
    shrink_any(family_model)
    folder = slimfusion.save(family_model, tmp_path / "shrunk")
    torch.save(_output(family_model), tmp_path / "expected.pt")  # a tensor, not a model
    script = textwrap.dedent(
        f"""
        import sys, torch
        torch.set_num_threads({torch.get_num_threads()})  # same reduction order as this process
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import slimfusion
        from test_io import _output
        model = slimfusion.load({str(folder)!r})
        expected = torch.load({str(tmp_path / "expected.pt")!r}, weights_only=True)
        sys.exit(0 if torch.equal(_output(model), expected) else 1)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_saved_folder_is_diffusers_style(tmp_path):
    model = slimfusion.load("builtin:digits-features")
    folder = slimfusion.save(model, tmp_path / "m")
    names = sorted(p.name for p in folder.iterdir())
    assert "config.json" in names and META_FILE in names
    assert any(n.endswith(".safetensors") for n in names)
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    meta = json.loads((folder / META_FILE).read_text())
    assert meta["format_version"] == 1 and meta["class"] == "DigitClassifier"
    assert meta["history"][0]["step"] == "train_classifier"


def test_plain_diffusers_folder_and_pipeline_folder_load(tmp_path):
    from conftest import tiny_model
    from diffusers import DDPMScheduler
    from test_io import _output as out

    model = tiny_model("UNet2DModel")
    model.save_pretrained(tmp_path / "plain")  # written by diffusers itself, no slimfusion.json
    assert torch.equal(out(slimfusion.load(tmp_path / "plain")), out(model))

    pipe = tmp_path / "pipe"
    model.save_pretrained(pipe / "unet")
    DDPMScheduler(num_train_timesteps=50).save_pretrained(pipe / "scheduler")
    (pipe / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "DDPMPipeline",
                "unet": ["diffusers", "UNet2DModel"],
                "scheduler": ["diffusers", "DDPMScheduler"],
            }
        )
    )
    loaded = slimfusion.load(pipe)
    assert torch.equal(out(loaded), out(model))
    assert loaded._slimfusion_meta["scheduler"]["num_train_timesteps"] == 50
    with pytest.raises(NotAModelError, match="no component 'vae'"):
        slimfusion.load(pipe, component="vae")


def test_overwrite_refused_then_atomic(tmp_path, monkeypatch):
    from conftest import tiny_model

    model = tiny_model("UNet2DModel")
    target = slimfusion.save(model, tmp_path / "m")
    with pytest.raises(FileExistsError):
        slimfusion.save(model, target)

    def crash(self, path, **kwargs):  # write part of a model, then die
        Path(path).mkdir(parents=True)
        (Path(path) / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(type(model), "save_pretrained", crash)
    with pytest.raises(KeyboardInterrupt):
        slimfusion.save(model, tmp_path / "new")
    with pytest.raises(KeyboardInterrupt):
        slimfusion.save(model, target, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no half-written or temporary folder
    monkeypatch.undo()
    assert torch.equal(_output(slimfusion.load(target)), _output(model))  # the old one is intact


# --------------------------------------------------------------------------------------------------- bad input
@pytest.fixture
def saved(tmp_path):
    from conftest import tiny_model

    return slimfusion.save(tiny_model("UNet2DModel"), tmp_path / "saved")


def _truncate(folder: Path) -> None:
    weights = next(folder.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _garble(folder: Path) -> None:
    next(folder.glob("*.safetensors")).write_bytes(b"\x00garbage" * 10)


def _newer_format(folder: Path) -> None:
    meta = json.loads((folder / META_FILE).read_text())
    (folder / META_FILE).write_text(json.dumps(meta | {"format_version": 99}))


def _pickle_only(folder: Path) -> None:
    next(folder.glob("*.safetensors")).rename(folder / "diffusion_pytorch_model.bin")


def _wrong_shapes(folder: Path) -> None:
    weights = next(folder.glob("*.safetensors"))
    from safetensors.torch import load_file

    state = load_file(weights)
    key = next(k for k in state if k.endswith("conv_in.weight"))
    state[key] = torch.zeros(3, 1, 3, 3)
    save_file(state, weights)


BAD_INPUTS = {
    "missing path": (None, ModelNotFoundError, "model not found"),
    "not a model folder": ("empty", NotAModelError, "not a model folder"),
    "truncated safetensors": (_truncate, CorruptFileError, "corrupt or truncated"),
    "corrupt safetensors": (_garble, CorruptFileError, "corrupt or truncated"),
    "newer format version": (_newer_format, FormatVersionError, "format version 99"),
    "pickle weights only": (_pickle_only, NotAModelError, "safetensors only"),
    "shape mismatch": (_wrong_shapes, CorruptFileError, "conv_in.weight"),
    "unknown builtin": ("builtin", ModelNotFoundError, "unknown builtin"),
}


def _make_bad(case: str, saved: Path, tmp_path: Path) -> str:
    action = BAD_INPUTS[case][0]
    if action is None:
        return str(tmp_path / "does-not-exist")
    if action == "empty":
        (tmp_path / "empty").mkdir()
        return str(tmp_path / "empty")
    if action == "builtin":
        return "builtin:no-such-model"
    action(saved)
    return str(saved)


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_typed_error(case, saved, tmp_path):
    _, error, message = BAD_INPUTS[case]
    with pytest.raises(error, match=message):
        slimfusion.load(_make_bad(case, saved, tmp_path))


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_cli_one_line_exit_2(case, saved, tmp_path, monkeypatch, capsys):
    from slimfusion import cli

    _, _, message = BAD_INPUTS[case]
    monkeypatch.setattr(sys, "argv", ["slimfusion", "info", _make_bad(case, saved, tmp_path)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    stderr = capsys.readouterr().err
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert exit_info.value.code == 2
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], stderr


def test_bad_input_in_a_real_process_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "slimfusion.cli", "info", str(tmp_path / "nope")], capture_output=True, text=True
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (
        result.stderr.strip() == f"error: model not found: {tmp_path / 'nope'} (no such folder, builtin:NAME or hub id)"
    )


def test_hub_id_offline_is_clear(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="cannot fetch hub id"):
        slimfusion.load("nobody-here/no-such-model-xyz")
