"""The Fréchet distance's matrix square root, three ways, on FID-sized covariances (2,048 dimensions), in one run:

    python benchmarks/bench_fid.py

scipy.linalg.sqrtm (pytorch-fid's way, the naive baseline) against `trace_sqrt_product` (eigh + eigvalsh, d × d) and
`fid_from_features` (an n × m nuclear norm, for fewer images than dimensions). Writes benchmarks/results/fid.json.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import linalg

from common import write_result
from v2l.eval.fid import feature_statistics, fid_from_features, trace_sqrt_product


def main() -> None:
    rng = np.random.default_rng(0)
    out = {}
    for n in (200, 2500):
        a = np.abs(rng.normal(size=(n, 2048)))
        b = np.abs(rng.normal(size=(n, 2048))) * 1.1 + 0.05
        (_, s1), (_, s2) = feature_statistics(a), feature_statistics(b)
        t = time.perf_counter()
        ref = float(np.trace(np.real(linalg.sqrtm(s1 @ s2))))
        t_ref = time.perf_counter() - t
        t = time.perf_counter()
        fast = trace_sqrt_product(s1, s2)
        t_fast = time.perf_counter() - t
        t = time.perf_counter()
        fid_from_features(a, b)
        t_feat = time.perf_counter() - t
        out[f"n{n}"] = {
            "images": n,
            "scipy_sqrtm_s": t_ref,
            "trace_sqrt_product_s": t_fast,
            "fid_from_features_s": t_feat,
            "trace_scipy": ref,
            "trace_fast": fast,
            "relative_difference": abs(fast - ref) / abs(ref),
            "speedup_trace": t_ref / t_fast,
            "speedup_fid_from_features": t_ref / t_feat,
        }
    write_result("fid", out)


if __name__ == "__main__":
    main()
