"""Cost and quality metrics: the reference architectures' published figures, FD sanity."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import slimfusion
from slimfusion.data import load_digits_split
from slimfusion.metrics.cost import count_macs, count_macs_all, count_params
from slimfusion.metrics.fd import digit_features, fd_between, feature_stats, frechet_distance


def test_ddpm_cifar10_reference_figures_via_cli():
    result = subprocess.run(
        [sys.executable, "-m", "slimfusion.cli", "info", "builtin:ddpm-cifar10", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["params"] == 35_746_307
    assert abs(info["macs"] / 6.064e9 - 1) < 0.01
    assert info["macs_all"] > 0.9 * info["macs"]
    assert info["class"] == "UNet2DModel" and info["file_bytes"] is None


def test_macs_scale_with_batch_and_attention_counts_in_macs_all(family_model):
    one, two = count_macs(family_model, 1), count_macs(family_model, 2)
    assert two == pytest.approx(2 * one, rel=0.02)
    assert count_macs_all(family_model) > 0
    assert count_params(family_model) == sum(p.numel() for p in family_model.parameters())


def test_digits_features_classifier_is_accurate():
    from slimfusion.train.builtins.classifier import accuracy

    model = slimfusion.load("builtin:digits-features")
    assert accuracy(model, *load_digits_split("test")) >= 0.97


def test_fd_zero_on_itself_and_grows_with_noise():
    test, _ = load_digits_split("test")
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(test.shape, generator=gen)
    assert fd_between(test, test) == pytest.approx(0, abs=1e-6)
    fds = [fd_between(test, (test + s * noise).clamp(-1, 1)) for s in (0.1, 0.3, 0.6)]
    assert 0 < fds[0] < fds[1] < fds[2]


def test_frechet_distance_of_gaussians_matches_closed_form():
    mu1, mu2 = torch.zeros(3).numpy(), torch.tensor([1.0, 2.0, 0.0]).double().numpy()
    eye = torch.eye(3).double().numpy()
    # identity covariances: only the mean term is left; 4*I vs I: trace(I + 4I - 2*2I) = 3
    assert frechet_distance(mu1, eye, mu2, eye) == pytest.approx(5.0)
    assert frechet_distance(mu1, eye, mu1, 4 * eye) == pytest.approx(3.0)


def test_feature_stats_shape():
    feats = digit_features(load_digits_split("test")[0][:50])
    mu, sigma = feature_stats(feats)
    assert feats.shape == (50, 128) and mu.shape == (128,) and sigma.shape == (128, 128)
