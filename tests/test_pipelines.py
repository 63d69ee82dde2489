"""Conditional pipelines end to end on tiny SD- and DiT-shaped pipelines made with save_pretrained: load / save,
sampling through diffusers' pipeline classes, conditional fine-tuning, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_cli import run_cli

import slimfusion
from slimfusion.errors import ConfigError
from slimfusion.models.meta import history
from slimfusion.pipelines import load_pipeline, save_pipeline
from slimfusion.sample import SampleConfig, sample


def _cli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return run_cli(*args, timeout=timeout)


def _prompts(tmp_path, *lines: str):
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_plain_diffusers_loads_saved_pipelines(sd_folder, dit_folder):
    from diffusers import DiTPipeline, StableDiffusionPipeline

    sd = StableDiffusionPipeline.from_pretrained(sd_folder)
    assert sd(["a handwritten seven"], num_inference_steps=2, output_type="np").images.shape == (1, 16, 16, 1)
    dit = DiTPipeline.from_pretrained(dit_folder)
    assert len(dit.labels) == 10  # id2label survives the save (diffusers itself does not write it)
    assert dit([3], num_inference_steps=2, output_type="np").images.shape == (1, 16, 16, 1)
    assert (sd_folder / "unet" / "slimfusion.json").exists() and (
        sd_folder / "text_encoder" / "slimfusion.json"
    ).exists()


def test_pruned_pipeline_round_trip_gives_identical_images_in_a_fresh_process(sd_folder, tmp_path):
    pipe = load_pipeline(sd_folder)
    slimfusion.prune(pipe.unet, slimfusion.StructuralConfig(method="magnitude", ratio=0.5), progress=False)
    pipe.register_modules(unet=pipe.unet)
    saved = save_pipeline(pipe, tmp_path / "pruned")
    config = SampleConfig(num=3, steps=3, prompts=["a handwritten seven", "the digit 7"], batch_size=2)
    here = sample(pipe, config, progress=False)
    prompts = _prompts(tmp_path, "a handwritten seven", "the digit 7")
    result = _cli(
        "sample",
        str(saved),
        "--prompts",
        str(prompts),
        "--num",
        "3",
        "--steps",
        "3",
        "--batch-size",
        "2",
        "--out",
        str(tmp_path / "s"),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    there = np.load(tmp_path / "s" / "samples.npz")["images"]
    assert np.array_equal(there, ((here.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    record = json.loads((tmp_path / "s" / "sampling.json").read_text())
    assert record["prompts"] == ["a handwritten seven", "the digit 7"] and record["guidance"] == 2.0
    reloaded = load_pipeline(saved)
    assert history(reloaded.unet)[-1]["step"] == "prune"
    assert reloaded.unet.down_blocks[0].resnets[0].conv1.out_channels < 8


def test_prompts_and_labels_reach_the_model_and_batch_size_does_not_matter(sd_folder, dit_folder):
    pipe = load_pipeline(sd_folder)
    two = sample(
        pipe, SampleConfig(num=2, steps=3, prompts=["a handwritten one", "a handwritten eight"]), progress=False
    )
    same = sample(pipe, SampleConfig(num=2, steps=3, prompts=["a handwritten one"]), progress=False)
    assert not torch.allclose(two[1], same[1], atol=1e-3), "a different prompt gives a different image"
    config = SampleConfig(num=5, steps=3, prompts=["a handwritten one", "the digit 7"])
    full = sample(pipe, config, progress=False)
    rebatched = sample(pipe, config.model_copy(update={"batch_size": 2}), progress=False)
    assert torch.allclose(full, rebatched, atol=1e-5)
    off = sample(pipe, config.model_copy(update={"guidance": 1.0}), progress=False)
    strong = sample(pipe, config.model_copy(update={"guidance": 7.0}), progress=False)
    assert not torch.allclose(off, strong, atol=1e-3)
    dit = load_pipeline(dit_folder)
    labels = sample(dit, SampleConfig(num=2, steps=3, class_labels=[1, 8]), progress=False)
    ones = sample(dit, SampleConfig(num=2, steps=3, class_labels=[1]), progress=False)
    assert torch.allclose(labels[0], ones[0], atol=1e-5) and not torch.allclose(labels[1], ones[1], atol=1e-3)


def test_conditional_finetune_lowers_distillation_loss_and_resumes_exactly(sd_folder, dit_folder, tmp_path):
    from slimfusion.train import FinetuneConfig
    from slimfusion.train.conditional_data import digits_trainset, distill_trainset
    from slimfusion.train.loop import fit

    teacher_pipe = load_pipeline(sd_folder)
    data = distill_trainset(teacher_pipe, ["a handwritten one", "the digit 7"], num=8, steps=2, progress=False)
    assert data.inputs.shape == (8, 4, 8, 8) and data.table.shape[0] == 3  # null + two prompts

    def student():
        model = load_pipeline(sd_folder).unet
        return slimfusion.prune(model, slimfusion.StructuralConfig(method="magnitude", ratio=0.5), progress=False)

    config = FinetuneConfig(steps=6, batch_size=4, lr=1e-3, warmup_steps=1, distill=1.0, feature_distill=0.1)
    straight = fit(student(), data, config, "finetune", teacher=teacher_pipe.unet, progress=False)
    run = tmp_path / "run"
    fit(
        student(),
        data,
        config,
        "finetune",
        teacher=teacher_pipe.unet,
        out=run,
        checkpoint_every=2,
        stop_at=4,
        progress=False,
    )
    resumed = fit(
        slimfusion.load(run), data, config, "finetune", teacher=teacher_pipe.unet, out=run, resume=True, progress=False
    )
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name

    longer = fit(
        student(),
        data,
        config.model_copy(update={"steps": 60, "ema_decay": 0.0}),
        "finetune",
        teacher=teacher_pipe.unet,
        progress=False,
    )
    first = history(straight)[-1]["effect"]["final_loss"]
    assert history(longer)[-1]["effect"]["final_loss"] < first
    dit = load_pipeline(dit_folder)
    labelled = digits_trainset(dit)
    assert labelled.inputs.shape[1:] == (4, 8, 8) and labelled.table[labelled.null] == 1000


def test_cli_prune_then_data_free_finetune_writes_pipelines(sd_folder, tmp_path):
    prompts = _prompts(tmp_path, "a handwritten one", "the digit 7")
    pruned, recovered = tmp_path / "p", tmp_path / "r"
    result = _cli("prune", str(sd_folder), "--method", "magnitude", "--ratio", "0.3", "--out", str(pruned))
    assert result.returncode == 0, result.stderr[-2000:]
    assert (pruned / "model_index.json").exists() and (pruned / "text_encoder").is_dir()
    result = _cli(
        "finetune",
        str(pruned),
        "--distill-prompts",
        str(prompts),
        "--distill-num",
        "8",
        "--steps",
        "3",
        "--batch-size",
        "4",
        "--out",
        str(recovered),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    steps = history(load_pipeline(recovered).unet)
    assert [h["step"] for h in steps][-2:] == ["prune", "finetune"]
    assert steps[-1]["config"]["distill"] == 1.0 and steps[-1]["config"]["teacher"] == f"{sd_folder}#unet"


def _bad_cases(tmp_path, sd_folder, dit_folder):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# only a comment\n")
    captions = tmp_path / "captions"
    captions.mkdir()
    from PIL import Image

    for name in ("a", "b"):
        Image.new("L", (16, 16), 128).save(captions / f"{name}.png")
    (captions / "a.txt").write_text("a handwritten one")
    prompts = _prompts(tmp_path, "a handwritten one")
    return {
        "empty prompts file": (["sample", str(sd_folder), "--prompts", str(empty)], "no prompts"),
        "labels out of range": (["sample", str(dit_folder), "--class-labels", "3,12"], "out of range"),
        "no text encoder": (["sample", str(dit_folder), "--prompts", str(prompts)], "class-conditional"),
        "missing caption": (
            ["finetune", str(sd_folder), "--data", str(captions), "--steps", "1"],
            "b.png has no caption",
        ),
    }


@pytest.mark.parametrize("case", ["empty prompts file", "labels out of range", "no text encoder", "missing caption"])
def test_bad_conditional_input_is_one_line_exit_2_and_writes_nothing(
    case, sd_folder, dit_folder, tmp_path, monkeypatch, capsys
):
    from slimfusion import cli

    args, message = _bad_cases(tmp_path, sd_folder, dit_folder)[case]
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["slimfusion", *args, "--out", str(out)])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_info.value.code == 2 and len(lines) == 1 and message in lines[0], lines
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_evaluate_refuses_other_prompts_for_ssim(sd_folder, tmp_path):
    from slimfusion.evaluate import EvaluateConfig, evaluate

    for name, prompt in (("a", "a handwritten one"), ("b", "the digit 7")):
        pipe = load_pipeline(sd_folder)
        from slimfusion.sample import sample_to_folder

        sample_to_folder(pipe, SampleConfig(num=2, steps=2, prompts=[prompt]), tmp_path / name)
    with pytest.raises(ConfigError, match="differ in prompts"):
        evaluate(str(tmp_path / "a"), EvaluateConfig(metrics=["ssim"]), original=str(tmp_path / "b"), progress=False)
    result = evaluate(str(tmp_path / "a"), EvaluateConfig(metrics=["accuracy", "clip"]), progress=False)
    assert "accuracy" in result["metrics"] and "CLIP" in result["skipped"]["clip"]


def test_clip_score_from_a_local_safetensors_clip_model(tmp_path):
    from conftest import tiny_clip_folder

    from slimfusion.metrics.clip import clip_score_or_reason

    tiny_clip_folder(tmp_path / "clip", ["a handwritten one", "the digit 7"])
    images = torch.rand(4, 1, 16, 16) * 2 - 1
    record = {"prompts": ["a handwritten one", "the digit 7"], "indices": [0, 1, 2, 3]}
    scores, reason = clip_score_or_reason(images, record, str(tmp_path / "clip"))
    # each image is scored against its own prompt: 100 x max(cos, 0) of the model's own embeddings, computed here
    # independently (random weights cannot tell a matching prompt from a mismatched one; trained ones are not
    # downloadable, so the pairing and the formula are what this checks)
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(str(tmp_path / "clip")).eval()
    processor = CLIPProcessor.from_pretrained(str(tmp_path / "clip"))
    rgb = list(((images + 1) / 2).expand(-1, 3, -1, -1))
    texts = ["a handwritten one", "the digit 7"]
    with torch.no_grad():
        out = model(**processor(text=texts, images=rgb, return_tensors="pt", padding=True, do_rescale=False))
    cos = (
        torch.nn.functional.normalize(out.image_embeds, dim=-1)
        @ torch.nn.functional.normalize(out.text_embeds, dim=-1).T
    )
    own = 100 * cos[torch.arange(4), torch.tensor([0, 1, 0, 1])].clamp_min(0)
    other = 100 * cos[torch.arange(4), torch.tensor([1, 0, 1, 0])].clamp_min(0)
    assert reason is None and np.allclose(scores, own.numpy(), atol=1e-4)
    assert not np.allclose(scores, other.numpy(), atol=1e-4)  # a pairing mistake would score the other prompt
    assert clip_score_or_reason(images, record, None)[1].startswith("CLIP score needs local CLIP weights")
    assert "not a folder" in clip_score_or_reason(images, record, str(tmp_path))[1]
