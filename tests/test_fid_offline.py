"""FID end to end without downloads: torch-fidelity's InceptionV3 architecture with random weights saved as
safetensors computes FID and KID from images through `slimfusion evaluate` (the real weights are converted the same
way: docs/evaluate.md).

torch-fidelity sits in its own folder (`make install` puts it in .venv/fid-extra, without dependencies): installed
into the environment without torchvision, it would break torchmetrics' image metrics, which import it when present.
So the check runs in a subprocess that has that folder on its path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FID_EXTRA = Path(sys.prefix) / "fid-extra"

SCRIPT = r"""
import json, sys, torch
from safetensors.torch import save_file
from slimfusion.evaluate import EvaluateConfig, evaluate
from slimfusion.metrics.fid import inception_module
from slimfusion.sample import save_samples

root = sys.argv[1]
fe = inception_module()
keep, load = fe.FeatureExtractorInceptionV3.load_state_dict, fe.torch.load
fe.FeatureExtractorInceptionV3.load_state_dict = lambda self, state: None  # keep the random initialisation
fe.torch.load = lambda *_a, **_k: {}
torch.manual_seed(0)
network = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path="-")
fe.FeatureExtractorInceptionV3.load_state_dict, fe.torch.load = keep, load
save_file({k: v.contiguous() for k, v in network.state_dict().items()}, f"{root}/inception.safetensors")

blobs = torch.rand(24, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
save_samples(blobs[:12], f"{root}/a")
save_samples(blobs[12:], f"{root}/b")
save_samples((blobs[:12] * 0.2 - 0.8).clamp(-1, 1), f"{root}/dark")
config = EvaluateConfig(metrics=["fid", "kid"], inception_weights=f"{root}/inception.safetensors", resamples=20)
out = {name: evaluate(f"{root}/{name}", config, ref=f"{root}/b", progress=False) for name in ("a", "dark")}
print(json.dumps(out))
"""


@pytest.mark.skipif(not FID_EXTRA.exists(), reason="torch-fidelity is not in .venv/fid-extra (make install puts it)")
def test_fid_and_kid_are_computed_from_images_with_local_inception_weights(tmp_path):
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(FID_EXTRA), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    same, dark = result["a"], result["dark"]
    assert set(same["metrics"]) == {"fid", "kid"} and not same["skipped"]
    assert 0 <= same["metrics"]["fid"] < dark["metrics"]["fid"]  # a darkened set lies further from the reference
    assert same["intervals"]["fid"][0] <= same["metrics"]["fid"] <= same["intervals"]["fid"][1] + 1e-9
