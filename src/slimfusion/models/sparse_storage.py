"""Compact storage of sparse weights: a bitmask of the non-zeros plus the non-zero values, in one safetensors file.

A tensor is stored this way only where that is smaller (zeros above ~3% for float32); the file decodes to exactly
the dense tensors that were saved. safetensors has no sparse layout and torch's sparse tensors cannot be saved in it,
hence this small codec (numpy's packbits does the bit packing).
"""

from __future__ import annotations

import json

import numpy as np
import torch

from slimfusion.errors import CorruptFileError

SPARSE_FILE = "slimfusion_sparse.safetensors"
FORMAT = "slimfusion-sparse-bitmask"
MASK, VALUES = "::mask", "::values"


def encode(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) to write: sparse float tensors as mask + values, the rest as they are."""
    tensors: dict[str, torch.Tensor] = {}
    shapes: dict[str, list[int]] = {}
    for key, tensor in state.items():
        tensor = tensor.detach().cpu().contiguous()
        if not tensor.is_floating_point() or tensor.numel() == 0:
            tensors[key] = tensor
            continue
        nonzero = tensor != 0
        kept = int(nonzero.sum())
        if kept * tensor.element_size() + (tensor.numel() + 7) // 8 >= tensor.numel() * tensor.element_size():
            tensors[key] = tensor
            continue
        tensors[key + MASK] = torch.from_numpy(np.packbits(nonzero.flatten().numpy()))
        tensors[key + VALUES] = tensor[nonzero].clone()
        shapes[key] = list(tensor.shape)
    return tensors, {"format": FORMAT, "shapes": json.dumps(shapes)}


def decode(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None) -> dict[str, torch.Tensor]:
    """The dense state dict of a file written by `encode` (other safetensors files pass through unchanged)."""
    if not metadata or metadata.get("format") != FORMAT:
        return tensors
    try:
        shapes = json.loads(metadata["shapes"])
    except (KeyError, json.JSONDecodeError) as exc:
        raise CorruptFileError(f"compact weights: unreadable shapes metadata ({exc})") from exc
    state = {k: v for k, v in tensors.items() if not k.endswith((MASK, VALUES))}
    for key, shape in shapes.items() if isinstance(shapes, dict) else ():
        mask, values = tensors.get(key + MASK), tensors.get(key + VALUES)
        if mask is None or values is None or not _is_shape(shape):
            raise CorruptFileError(f"compact weights: {key} has no mask / values or a malformed shape {shape!r}")
        count = int(np.prod(shape))
        # checked against what the file holds before anything is allocated: the mask has one bit per element
        if (count + 7) // 8 != mask.numel() or mask.dtype != torch.uint8:
            raise CorruptFileError(f"compact weights: {key} declares {count} elements, its mask holds {mask.numel()} B")
        bits = np.unpackbits(mask.numpy(), count=count).astype(bool)
        if int(bits.sum()) != values.numel():
            raise CorruptFileError(f"compact weights: {key}'s mask and values disagree ({values.numel()} values)")
        dense = torch.zeros(count, dtype=values.dtype)
        dense[torch.from_numpy(bits)] = values
        state[key] = dense.view(shape)
    return state


def _is_shape(shape) -> bool:
    return isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)


def is_compact(metadata: dict[str, str] | None) -> bool:
    return bool(metadata) and metadata.get("format") == FORMAT
