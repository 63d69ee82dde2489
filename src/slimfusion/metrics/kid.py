"""Kernel distance (KID's estimator): unbiased squared MMD with the cubic polynomial kernel (x.y / d + 1)^3.

Binkowski et al. 2018: unlike FD it has no bias at small sample counts, so it is steadier at the few hundred samples
a CPU can afford. By hand because the bootstrap (metrics/intervals.py) re-evaluates it on thousands of index draws
from kernels computed once; torchmetrics' KID recomputes features and kernels per call.
"""

from __future__ import annotations

import numpy as np


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1) ** 3


class KernelDistance:
    """Squared MMD between samples (features [N, D]) and a fixed reference set (features [M, D]), for any index
    draw of the samples: kernels are computed once, a draw only picks rows. Pairs of one sample with itself (also
    when a draw repeats an index) are left out, as the unbiased estimator leaves out the diagonal."""

    def __init__(self, features: np.ndarray, reference: np.ndarray):
        if len(features) < 2 or len(reference) < 2:
            raise ValueError("kernel distance needs at least 2 samples and 2 reference images")
        self.kxx = polynomial_kernel(features, features)
        self.kxy_rows = polynomial_kernel(features, reference).mean(axis=1)
        kyy = polynomial_kernel(reference, reference)
        m = len(reference)
        self.yy = float((kyy.sum() - np.trace(kyy)) / (m * (m - 1)))

    def __call__(self, idx: np.ndarray) -> float:
        counts = np.bincount(idx, minlength=len(self.kxx)).astype(float)
        # pairs (a, b) of draw positions whose samples differ: c^T K c without the c_i^2 K_ii terms
        pairs = len(idx) ** 2 - (counts**2).sum()
        xx = (counts @ self.kxx @ counts - (counts**2 * np.diag(self.kxx)).sum()) / max(pairs, 1)
        return float(xx + self.yy - 2 * self.kxy_rows[idx].mean())
