"""How much one GEMM-peak sample can be trusted: OpenVINO MatMul chains per precision and shape, two rounds.

Prints one JSON line per sample. Used to decide that `bench`'s peak is the best of several samples over two
shapes (dcube_edge.bench.peaks.PEAK_SHAPES), not one sample of one shape."""
from __future__ import annotations

import json

from dcube_edge.bench.peaks import openvino_gemm_peak
from dcube_edge.runtimes import isa

SHAPES = ((1024, 8), (2048, 4), (2048, 8), (4096, 2))  # (n, chained MatMuls)

if __name__ == "__main__":
    precisions = ("f32", "bf16", "int8") if isa.has_bf16() else ("f32", "int8")
    for rnd in range(2):
        for precision in precisions:
            for n, chain in SHAPES:
                r = openvino_gemm_peak(precision, n=n, chain=chain, iterations=10)
                print(json.dumps({"round": rnd, "precision": precision, "n": n, "chain": chain,
                                  "gflops_per_s": round(r["gflops_per_s"], 1)}), flush=True)
