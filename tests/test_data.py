"""Digits splits and users' image folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from slimfusion.data import load_digits_split, load_image_folder, load_images
from slimfusion.errors import DataError


def test_digits_split_is_fixed_disjoint_and_scaled():
    train, train_labels = load_digits_split("train")
    test, test_labels = load_digits_split("test")
    assert train.shape == (1437, 1, 16, 16) and test.shape == (360, 1, 16, 16)
    assert train.min() >= -1 and train.max() <= 1
    assert torch.equal(load_digits_split("test")[0], test)  # same split every call
    assert set(test_labels.tolist()) == set(range(10))
    everything = load_digits_split("all")[0].flatten(1)
    assert len(everything) == 1797
    # no test image appears in train
    assert not (torch.cdist(test.flatten(1), train.flatten(1)).min(dim=1).values == 0).all()


def test_image_folder_resizes_crops_and_converts(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 255, (30, 30), dtype=np.uint8)).save(tmp_path / "b.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    rgb = load_image_folder(tmp_path, size=16, channels=3)
    grey = load_images(str(tmp_path), size=8, channels=1)
    assert rgb.shape == (2, 3, 16, 16) and grey.shape == (2, 1, 8, 8)
    assert rgb.min() >= -1 and rgb.max() <= 1


@pytest.mark.parametrize(
    "spec, message",
    [("digits:validation", "unknown digits split"), ("no/such/folder", "unknown data set")],
)
def test_bad_data_specs(spec, message):
    with pytest.raises(DataError, match=message):
        load_images(spec)


def test_empty_and_corrupt_folders(tmp_path):
    with pytest.raises(DataError, match="no images"):
        load_image_folder(tmp_path, size=8)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image"):
        load_image_folder(tmp_path, size=8)
