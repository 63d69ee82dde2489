"""Seeded sampling: reproducible, independent of batch size and of how indices are split, files written."""

from __future__ import annotations

import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import tiny_model

import slimfusion
from slimfusion.errors import ConfigError
from slimfusion.sample import SampleConfig, make_grid, sample, save_samples, shard_indices


@pytest.fixture(scope="module")
def unet():
    return tiny_model("UNet2DModel")


@pytest.mark.parametrize("scheduler", ["ddim", "ddpm"])
def test_same_seed_same_images_any_batching(unet, scheduler):
    config = SampleConfig(num=5, steps=4, scheduler=scheduler, seed=3, batch_size=5)
    full = sample(unet, config, progress=False)
    assert full.shape == (5, 1, 8, 8) and full.abs().max() <= 1
    assert torch.equal(sample(unet, config, progress=False), full)
    rebatched = sample(unet, config.model_copy(update={"batch_size": 2}), progress=False)
    assert torch.allclose(rebatched, full, atol=1e-5)
    shard = sample(unet, config, indices=[1, 3], progress=False)
    assert torch.allclose(shard, full[[1, 3]], atol=1e-5)


def test_other_seed_other_images(unet):
    a = sample(unet, SampleConfig(num=2, steps=3, seed=0), progress=False)
    b = sample(unet, SampleConfig(num=2, steps=3, seed=1), progress=False)
    assert not torch.allclose(a, b)
    assert not torch.allclose(a[0], a[1])


def test_rejects_non_unet_and_too_many_steps(unet):
    with pytest.raises(ConfigError, match="alone cannot be sampled: pass its pipeline folder"):
        sample(tiny_model("DiTTransformer2DModel"), SampleConfig(num=1, steps=2), progress=False)
    with pytest.raises(ConfigError, match="exceeds"):
        sample(unet, SampleConfig(num=1, steps=1000, scheduler="ddim").model_copy(update={"steps": 1001}))


def test_files_and_grid(tmp_path):
    images = torch.linspace(-1, 1, 5 * 64).reshape(5, 1, 8, 8)
    save_samples(images, tmp_path)
    assert sorted(p.name for p in tmp_path.glob("sample_*.png")) == [f"sample_{i:05d}.png" for i in range(5)]
    data = np.load(tmp_path / "samples.npz")
    assert data["images"].shape == (5, 8, 8, 1) and data["images"].dtype == np.uint8
    grid = make_grid(images, ncols=3, pad=1)
    assert grid.shape == (2 * 9 + 1, 3 * 9 + 1, 1)
    assert grid[1, 1, 0] == 0 and grid[0, 0, 0] == 255  # first pixel of image 0 is -1 -> 0; padding is white


def _launch(processes: int, model, out, port: int, *extra: str) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(processes)]
    launcher += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    launcher += ["--num_cpu_threads_per_process", "1", "--main_process_port", str(port)]
    if processes > 1:
        launcher.append("--multi_gpu")  # torchrun-style launcher; on a machine without CUDA it runs CPU processes
    command = [*launcher, "-m", "slimfusion", "sample", str(model), "--num", "7", "--batch-size", "2", *extra]
    return subprocess.run([*command, "--steps", "3", "--out", str(out)], capture_output=True, text=True, timeout=300)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_accelerate_sampling_equals_one_process(tmp_path):
    model = slimfusion.save(tiny_model("UNet2DModel"), tmp_path / "unet")
    one = _launch(1, model, tmp_path / "one", _free_port())
    two = _launch(2, model, tmp_path / "two", _free_port())
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    assert "2 process(es)" in two.stderr
    a, b = np.load(tmp_path / "one" / "samples.npz"), np.load(tmp_path / "two" / "samples.npz")
    assert np.array_equal(a["indices"], np.arange(7)) and np.array_equal(b["indices"], np.arange(7))
    assert np.array_equal(a["images"], b["images"])
    assert sorted(p.name for p in (tmp_path / "two").glob("sample_*.png")) == [f"sample_{i:05d}.png" for i in range(7)]
    assert not list(tmp_path.glob(".two*")), "no partial folder is left behind"


@pytest.mark.parametrize(("num", "batch", "world"), [(7, 2, 2), (10, 3, 3), (3, 4, 2), (64, 64, 1)])
def test_shards_are_whole_batches_covering_every_index_once(num, batch, world):
    shards = [shard_indices(num, batch, rank, world) for rank in range(world)]
    assert sorted(i for s in shards for i in s) == list(range(num))
    for shard in shards:
        starts = shard[::batch]
        assert all(s % batch == 0 for s in starts)


def test_two_process_conditional_sampling_equals_one_process(sd_folder, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a handwritten one\nthe digit 7\nnumber three, written by hand\n")
    one = _launch(1, sd_folder, tmp_path / "one", _free_port(), "--prompts", str(prompts))
    two = _launch(2, sd_folder, tmp_path / "two", _free_port(), "--prompts", str(prompts))
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0 and "2 process(es)" in two.stderr, two.stderr[-2000:]
    a, b = np.load(tmp_path / "one" / "samples.npz"), np.load(tmp_path / "two" / "samples.npz")
    assert np.array_equal(a["images"], b["images"]) and np.array_equal(b["indices"], np.arange(7))
