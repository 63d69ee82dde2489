"""Calibrating conditional models on their own samples: prompts (text-to-image pipelines) and class labels (DiT)."""

from __future__ import annotations

import json
import string
import subprocess
import sys

import pytest
import torch
from conftest import TINY_CONFIGS, tiny_model

import slimfusion
from slimfusion.errors import ConfigError, DataError
from slimfusion.models.families import FAMILIES
from slimfusion.models.io import build
from slimfusion.models.meta import get_meta, history
from slimfusion.prune import StructuralConfig, prune
from slimfusion.prune.conditioning import parse_class_labels, read_prompts, self_samples
from slimfusion.train.diffusion import default_scheduler_config

SHORT = default_scheduler_config(num_train_timesteps=20)


def _tiny_pipeline(root):
    """A text-to-image pipeline folder: tiny UNet, tiny CLIP text encoder (width = cross-attention width), tokenizer."""
    from diffusers import DDPMScheduler
    from transformers import CLIPTokenizer

    root.mkdir()
    slimfusion.save(tiny_model("UNet2DConditionModel"), root / "unet")
    torch.manual_seed(0)
    text = TINY_CONFIGS["CLIPTextModel"] | {"hidden_size": 12, "projection_dim": 12}
    slimfusion.save(build(FAMILIES["CLIPTextModel"], text).eval(), root / "text_encoder")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase:
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    (root / "vocab.json").write_text(json.dumps(vocab))
    (root / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(root / "vocab.json"), str(root / "merges.txt"), model_max_length=8)
    tokenizer.save_pretrained(str(root / "tokenizer"))
    DDPMScheduler(**{k: v for k, v in SHORT.items() if not k.startswith("_")}).save_pretrained(root / "scheduler")
    index = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}
    index |= {"text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"]}
    (root / "model_index.json").write_text(json.dumps(index))
    return root


def test_prune_text_to_image_pipeline_on_its_own_samples_of_prompts(tmp_path):
    pipeline = _tiny_pipeline(tmp_path / "pipe")
    (tmp_path / "prompts.txt").write_text("a handwritten seven\n\na handwritten three\n")
    out = tmp_path / "pruned"
    result = subprocess.run(
        [sys.executable, "-m", "slimfusion", "prune", str(pipeline), "--prompts", str(tmp_path / "prompts.txt")]
        + ["--method", "diff-pruning", "--threshold", "0", "--ratio", "0.5", "--batch-size", "4"]
        + ["--calib-sample-steps", "3", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    effect = history(slimfusion.load(out))[-1]["effect"]
    assert effect["calib_self_sampled"] is True and effect["calib_images"] == 4 and effect["timesteps_used"] == 20
    assert effect["params_after"] < effect["params_before"]


def test_self_samples_follow_their_conditioning():
    model = tiny_model("DiTTransformer2DModel")
    get_meta(model)["scheduler"] = SHORT
    same = self_samples(model, torch.tensor([1, 1]), steps=3, progress=False)
    other = self_samples(model, torch.tensor([1, 5]), steps=3, progress=False)
    assert torch.equal(same[0], other[0])  # image 0: same seed, same label
    assert not torch.allclose(other[1], same[1])  # image 1: same seed, other label


def test_dit_calibrates_on_own_samples_of_class_labels():
    model = tiny_model("DiTTransformer2DModel")
    get_meta(model)["scheduler"] = SHORT
    config = StructuralConfig(method="taylor", ratio=0.5, batch_size=3, calib_sample_steps=2)
    prune(model, config, progress=False, conditions=parse_class_labels("2,7", 10))
    effect = history(model)[-1]["effect"]
    assert effect["calib_self_sampled"] and effect["calib_images"] == 3


def test_bad_conditioning_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"\[0, 10\)"):
        parse_class_labels("3,12", 10)
    with pytest.raises(ConfigError, match="integers"):
        parse_class_labels("cat", 10)
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(DataError, match="no prompts"):
        read_prompts(tmp_path / "empty.txt")
    model = slimfusion.save(tiny_model("UNet2DConditionModel"), tmp_path / "unet")
    (tmp_path / "p.txt").write_text("a seven\n")
    result = subprocess.run(
        [sys.executable, "-m", "slimfusion", "prune", str(model), "--prompts", str(tmp_path / "p.txt")]
        + ["--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "pipeline folder" in result.stderr and not (tmp_path / "x").exists()
