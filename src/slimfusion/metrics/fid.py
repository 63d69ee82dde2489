"""FID features: torch-fidelity's InceptionV3 (the reference port of the TF FID network), weights from safetensors.

Only with weights present locally: `--inception-weights FILE.safetensors`. torch-fidelity would otherwise download
a pickled .pth and `torch.load` it; slimfusion reads no pickles, so the state dict is converted once by the user
(docs/evaluate.md) and handed to the extractor here. Without weights there is no FID, never a stand-in under its name.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from safetensors.torch import load_file

from slimfusion.errors import ConfigError, CorruptFileError

MISSING_WEIGHTS = (
    "FID needs InceptionV3 weights on disk: pass --inception-weights FILE.safetensors "
    "(torch-fidelity's pt_inception-2015-12-05 state dict converted to safetensors, see docs/evaluate.md)"
)


def inception_module():
    """torch-fidelity's InceptionV3 module. Its package `__init__` also imports torchvision (for data sets slimfusion
    never uses), which a CPU-only torch cannot import beside PyPI's torchvision; the module itself needs only torch,
    so when the package import fails it is loaded from the package folder without running that `__init__`."""
    try:  # optional dependency (the `fid` extra)
        from torch_fidelity import feature_extractor_inceptionv3

        return feature_extractor_inceptionv3
    except ImportError:
        spec = importlib.util.find_spec("torch_fidelity")
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError("FID needs torch-fidelity: pip install 'slimfusion[fid]'") from None
    sys.modules.pop("torch_fidelity", None)  # the half-imported package, replaced by its bare folder
    package = types.ModuleType("torch_fidelity")
    package.__path__ = list(spec.submodule_search_locations)
    sys.modules["torch_fidelity"] = package
    return importlib.import_module("torch_fidelity.feature_extractor_inceptionv3")


def _extractor(weights: str | Path):
    fe = inception_module()

    path = Path(weights)
    if path.suffix != ".safetensors" or not path.exists():
        raise ConfigError(f"--inception-weights {path}: need an existing .safetensors file")
    try:
        state = load_file(str(path))
    except Exception as exc:  # truncated or foreign file
        raise CorruptFileError(f"{path}: corrupt or truncated safetensors file") from exc
    # The extractor's constructor reads its weights with torch's pickle loader; hand it our dict instead.
    original = fe.torch
    fe.torch = SimpleNamespace(**{k: getattr(torch, k) for k in dir(torch) if not k.startswith("__")})
    fe.torch.load = lambda *_args, **_kwargs: state
    try:
        model = fe.FeatureExtractorInceptionV3(
            "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(path)
        )
    except RuntimeError as exc:
        raise CorruptFileError(f"{path}: not InceptionV3 weights ({str(exc).splitlines()[0][:120]})") from exc
    finally:
        fe.torch = original
    return model.eval()


@torch.no_grad()
def inception_features(images: torch.Tensor, weights: str | Path | None, batch_size: int = 64) -> np.ndarray:
    """2048-d pool features [N, 2048] of images in [-1, 1] (grey images are repeated to RGB)."""
    if weights is None:
        raise ConfigError(MISSING_WEIGHTS)
    extractor = _extractor(weights)
    out = []
    for chunk in images.split(batch_size):
        rgb = chunk.expand(-1, 3, -1, -1) if chunk.shape[1] == 1 else chunk
        uint8 = ((rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        out.append(extractor(uint8)[0].double())
    return torch.cat(out).numpy()
