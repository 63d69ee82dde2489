"""Pickle-free model I/O: diffusers-style folders (config.json + safetensors) plus `slimfusion.json`.

`slimfusion.json` records what the diffusers config cannot: the per-module attributes that compression changed
(channel and head counts), the history of steps, and the scheduler. `load` rebuilds the architecture from
config.json, re-applies those attributes, resizes exactly the tensors they explain, and loads the weights strictly.
Every save goes to a temporary sibling folder that is renamed into place only when complete.
"""

# the public names of model I/O in one place: finding a source (source.py), reading (reading.py), writing
# (writing.py), module-tree shapes (shapes.py), the format's names (format.py)
from slimfusion.models.families import FAMILIES, build  # noqa: F401  (older callers import these from here)
from slimfusion.models.format import FORMAT_VERSION, META_FILE, PICKLE_SUFFIXES, RECORDED, STORAGES  # noqa: F401
from slimfusion.models.reading import _read_json, load_model_folder, read_slimfusion_json  # noqa: F401
from slimfusion.models.shapes import replay_removals, shape_overrides  # noqa: F401
from slimfusion.models.source import (  # noqa: F401
    _looks_like_hub_id,  # noqa: F401
    builtin_path,
    load,
)
from slimfusion.models.writing import atomic_folder, replace_folder, save, write_compact, write_meta  # noqa: F401
