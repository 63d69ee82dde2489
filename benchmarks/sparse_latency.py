"""Does sparsity make anything faster on this CPU? Dense vs torch's sparse CSR matmul, and the whole sparse UNet.

Regenerates benchmarks/results/sparse_latency.md:

    .venv/bin/python benchmarks/sparse_latency.py

Linear layers of Stable Diffusion's sizes (in x out: 320 x 320, 1280 x 1280, 1280 x 5120 and its down projection
5120 x 1280) at the token counts they see (77 text tokens; 1,024 and 4,096 latent positions), magnitude-pruned to
0.5 - 0.99; y = x W^T as a dense matmul and as `torch.sparse.mm` with W in CSR, both on 2 threads, interleaved
in 9 rounds; ratio = dense time / CSR time of each round (> 1: CSR wins), shown as the median over rounds with its
95% bootstrap interval over rounds; a cell whose interval covers 1 is a tie (marked "tie"). Then the digits
text-to-image UNet at 50% magnitude sparsity against the dense one (both dense kernels: zeros cost the same), one
batch of 32, interleaved in 21 rounds, the same interval and verdict. Semi-structured 2:4 kernels
(`torch.sparse.to_sparse_semi_structured`) need an NVIDIA GPU, so they are not timed here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from runinfo import stamp

from slimfusion.metrics.timing import cell, interleaved, ratio

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "sparse_latency.md"
SHAPES = [(320, 320), (1280, 1280), (1280, 5120), (5120, 1280)]
TOKENS = [77, 1024, 4096]
SPARSITIES = [0.5, 0.7, 0.9, 0.95, 0.99]
ROUNDS, UNET_ROUNDS = 9, 21


@torch.no_grad()
def layer_rows() -> list[str]:
    rows = []
    torch.manual_seed(0)
    for fan_in, fan_out in SHAPES:
        for tokens in TOKENS:
            x = torch.randn(tokens, fan_in)
            weight = torch.randn(fan_out, fan_in)
            cells = []
            for sparsity in SPARSITIES:
                threshold = weight.abs().flatten().kthvalue(int(sparsity * weight.numel())).values
                sparse_w = torch.where(weight.abs() > threshold, weight, torch.zeros(()))
                csr = sparse_w.to_sparse_csr()
                x_t = x.T.contiguous()
                repeats = max(1, int(2e8 / (tokens * fan_in * fan_out)))
                fns = {
                    "dense": lambda x=x, w=sparse_w: x @ w.T,
                    "csr": lambda c=csr, xt=x_t: torch.sparse.mm(c, xt),
                }
                t = interleaved(fns, repeats, ROUNDS)
                cells.append(cell(*ratio(t["dense"], t["csr"])))
            rows.append(f"| {fan_in} x {fan_out} | {tokens} | " + " | ".join(cells) + " |")
    return rows


@torch.no_grad()
def unet_row() -> str:
    from slimfusion.pipelines import load_pipeline
    from slimfusion.sparsify import SparsityConfig, sparsify

    dense, sparse = load_pipeline("builtin:digits-t2i"), load_pipeline("builtin:digits-t2i")
    sparsify(sparse, SparsityConfig(sparsity=0.5), progress=False)
    x = torch.randn(32, 4, 8, 8)
    t = torch.full((32,), 500)
    states = torch.randn(32, dense.text_encoder.config.max_position_embeddings, dense.unet.config.cross_attention_dim)
    times = interleaved(
        {
            "dense": lambda: dense.unet(x, t, encoder_hidden_states=states),
            "sparse": lambda: sparse.unet(x, t, encoder_hidden_states=states),
        },
        5,
        UNET_ROUNDS,
    )
    dense_ms, sparse_ms = np.median(times["dense"]) * 1e3, np.median(times["sparse"]) * 1e3
    median, low, high = ratio(times["dense"], times["sparse"])
    verdict = "tie" if low <= 1 <= high else ("sparse faster" if low > 1 else "sparse slower")
    return (
        f"{dense_ms:.1f} ms dense, {sparse_ms:.1f} ms at 50% sparsity (medians): dense / sparse per round"
        f" {median:.2f}x, 95% interval [{low:.2f}, {high:.2f}] over {UNET_ROUNDS} rounds: {verdict}"
    )


def main() -> None:
    torch.set_num_threads(2)
    lines = [
        "# Sparse weights and CPU latency",
        "",
        f"Command: `.venv/bin/python benchmarks/sparse_latency.py` ({stamp()})",
        "",
        " ".join(__doc__.split("\n\n")[3].split()),
        "",
        "## Linear layer: dense matmul time / CSR matmul time (median over rounds [95% interval])",
        "",
        "| in x out | tokens | " + " | ".join(f"{s:.0%} sparse" for s in SPARSITIES) + " |",
        "|---|---:|" + "---:|" * len(SPARSITIES),
        *layer_rows(),
        "",
        "## Whole UNet of builtin:digits-t2i (batch 32)",
        "",
        unet_row(),
        "",
    ]
    RESULT.write_text("\n".join(lines))
    print(RESULT.read_text())


if __name__ == "__main__":
    main()
