"""Same seed, same images: `slimfusion sample` outputs are pinned by hash across refactors of the denoising runtime.

The hashes were recorded on main before the runtime redesign (issue 21) and must stay bit-identical; a case whose
images change on purpose is named here with the reason and its measured effect. `SLIMFUSION_RECORD=1` prints the
current hashes instead of asserting (for a deliberate, documented change only).
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from slimfusion.cli import app

RECORDED = {
    "ddpm-ddim": "d9824bc4da877387",
    "ddpm-ddpm": "77f4a0343fdb02d1",
    "ddpm-pruned": "24afc967579ca11e",
    "ddpm-deepcache-plan": "b2cbdfae088c2ade",
    "ddpm-bf16": None,  # bf16 kernels round differently per CPU: see BF16 below
    "t2i-ddim": "433ea6068c923b7c",
    "t2i-ddpm": "5b648f5a6940332e",
    "dit-ddim": "4d9507de82d4c77a",
}

# oneDNN picks its bf16 kernels by CPU (AMX tiles on recent Xeons, AVX-512 BF16 on EPYC), and they round differently:
# the same code gives other bf16 images on another CPU, so bf16 is pinned per (vendor, bf16 instruction set) seen here.
BF16 = {
    ("AuthenticAMD", "avx512_bf16"): "e26b9552467d8e23",  # AMD EPYC (recorded with the others)
    ("GenuineIntel", "amx_bf16"): "a6dd433eaa118123",  # Intel Xeon with AMX (2026-12-03; older code gives it too)
}


def bf16_family() -> tuple[str, str]:
    """(CPU vendor, its best bf16 instruction set) from /proc/cpuinfo; ("", "") where it cannot be read."""
    info = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    vendor = next((line.split(":")[1].strip() for line in info.splitlines() if line.startswith("vendor_id")), "")
    flags = set(next((line.split(":")[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    return vendor, next((isa for isa in ("amx_bf16", "avx512_bf16") if isa in flags), "")


def expected(case: str) -> str:
    if case != "ddpm-bf16":
        return RECORDED[case]
    family = bf16_family()
    if family not in BF16:
        pytest.skip(f"no bf16 images recorded for a {family} CPU (bf16 kernels differ per CPU; SLIMFUSION_RECORD=1)")
    return BF16[family]


def cli(*args: str) -> None:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, list[str]]:
    """Per case: the `slimfusion sample` arguments (model + options), artifacts made by the CLI as a user would."""
    root = tmp_path_factory.mktemp("golden")
    cli("prune", "builtin:digits-ddpm", "--method", "magnitude", "--ratio", "0.25", "--out", str(root / "pruned"))
    cli(
        "skip-plan", "builtin:digits-ddpm", "--method", "deepcache", "--steps", "10", "--interval", "3",
        "--out", str(root / "plan.json"), "--into", str(root / "planned"),
    )  # fmt: skip
    cli("quantize", "builtin:digits-ddpm", "--scheme", "bf16", "--out", str(root / "bf16"))
    prompts = root / "prompts.txt"
    prompts.write_text("a handwritten seven\nthe digit 3\n")
    fast = ["--num", "6", "--steps", "10", "--batch-size", "4"]
    t2i = ["builtin:digits-t2i", "--num", "4", "--steps", "4", "--prompts", str(prompts)]
    return {
        "ddpm-ddim": ["builtin:digits-ddpm", *fast],
        "ddpm-ddpm": ["builtin:digits-ddpm", *fast, "--scheduler", "ddpm"],
        "ddpm-pruned": [str(root / "pruned"), *fast],
        "ddpm-deepcache-plan": [str(root / "planned"), *fast],
        "ddpm-bf16": [str(root / "bf16"), *fast],
        "t2i-ddim": t2i,
        "t2i-ddpm": [*t2i, "--scheduler", "ddpm"],
        "dit-ddim": ["builtin:digits-dit", "--num", "4", "--steps", "4", "--class-labels", "3,7"],
    }  # fmt: skip


@pytest.mark.parametrize("case", sorted(RECORDED))
def test_sample_is_bit_identical_to_the_recorded_run(case, artifacts, tmp_path):
    want = expected(case) if not os.environ.get("SLIMFUSION_RECORD") else None
    out = tmp_path / "samples"
    cli("sample", *artifacts[case], "--out", str(out))
    images = np.load(out / "samples.npz")["images"]
    digest = hashlib.sha256(images.tobytes()).hexdigest()[:16]
    if os.environ.get("SLIMFUSION_RECORD"):
        print(f"\nRECORD {case} {digest}")
        return
    assert digest == want, f"{case}: images changed ({digest} != {want})"
