"""Hostile and clumsy input: nothing followed through a planted link, nothing left half-written, bounded parsing.

(The table-driven suite of issue 24 grows here; recipe cases live in test_recipe.py.)
"""

from __future__ import annotations

import pytest
from conftest import tiny_model

from slimfusion.errors import ConfigError
from slimfusion.sample import SampleConfig, sample_to_folder
from slimfusion.skip import SkipConfig, save_plan, skip_plan


def test_a_link_planted_at_the_plans_temporary_path_is_not_followed(tmp_path):
    unet = tiny_model("UNet2DModel")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / ".plan.json.partial").symlink_to(victim)
    plan = skip_plan(unet, SkipConfig(method="deepcache", steps=4, interval=2), progress=False)
    save_plan(plan, tmp_path / "plan.json")
    assert victim.read_text() == "precious" and (tmp_path / "plan.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial") and not p.is_symlink()]


def test_a_failed_sample_leaves_no_partial_folder_and_a_planted_link_is_not_followed(tmp_path):
    unet = tiny_model("UNet2DModel")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / ".out.partial").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ConfigError, match="need a pipeline"):
        sample_to_folder(unet, SampleConfig(num=2, steps=2, prompts=["a seven"]), tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.partial").exists()
    assert elsewhere.is_dir() and not any(elsewhere.iterdir())
