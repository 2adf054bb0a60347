"""GEMM peaks per precision, measured in the bench's own run: the rate an engine row of that precision
is compared with (the precision registry says which peak a precision's rows use)."""
from __future__ import annotations

import importlib.util

import numpy as np

from dcube_edge.runtimes import isa
from dcube_edge.runtimes.timing import time_fn, timed_ms


def gemm_peak(threads: int | None = None, n: int = 1024, iterations: int = 10) -> dict:
    """float32 GEMM GFLOP/s on this machine, measured now (ONNX Runtime MatMul, same threads)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])
    b = helper.make_tensor_value_info("b", TensorProto.FLOAT, [n, n])
    c = helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm", [a, b], [c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    stats = time_fn(lambda: sess.run(None, {"a": x, "b": x}), iterations, 2)
    return {"n": n, "gflops_per_s": 2 * n**3 / (stats["p50_ms"] / 1e3) / 1e9, "tool": "onnxruntime MatMul"}


def openvino_gemm_peak(precision: str, threads: int | None = None, n: int = 1024, chain: int = 8,
                       iterations: int = 10) -> dict:
    """GEMM rate of OpenVINO's CPU plugin at one precision (f32, bf16 hint, or int8 through FakeQuantize
    on both operands, which its low-precision transformations turn into int8 MatMuls): the peak an engine
    of that precision is measured against. ``chain`` n×n MatMuls in one model amortise the per-call
    input/output copies and conversions (one 2048² MatMul measured 3× lower for bf16 on an AMX Xeon);
    the fastest call counts, as a peak should."""
    import openvino as ov
    import openvino.opset13 as ops
    import openvino.properties as props
    import openvino.properties.hint as hints

    rng = np.random.default_rng(0)
    param = ops.parameter([n, n], ov.Type.f32, name="a")
    x, lo, hi = param, ops.constant(np.float32(-1.0)), ops.constant(np.float32(1.0))
    for _ in range(chain):
        w = ops.constant((rng.uniform(-1, 1, (n, n)) / np.sqrt(n)).astype(np.float32))
        if precision == "int8":
            x, w = ops.fake_quantize(x, lo, hi, lo, hi, 256), ops.fake_quantize(w, lo, hi, lo, hi, 255)
        x = ops.matmul(x, w, False, True)
    model = ov.Model([x], [param], f"gemm-{precision}")
    config = {hints.inference_precision(): "bf16" if precision == "bf16" else "f32",
              hints.performance_mode(): hints.PerformanceMode.LATENCY}
    if threads:
        config[props.inference_num_threads()] = threads
    request = ov.Core().compile_model(model, "CPU", config).create_infer_request()
    feed = rng.uniform(-1, 1, (n, n)).astype(np.float32)
    for _ in range(3):
        request.infer([feed])
    best = min(timed_ms(lambda: request.infer([feed])) for _ in range(iterations)) / 1e3
    return {"n": n, "chain": chain, "gflops_per_s": chain * 2 * n**3 / best / 1e9,
            "tool": f"openvino {chain}× MatMul ({precision})"}


# (n, chain) shapes of the GEMM peak; the best rate any of them reaches counts. On a 2-core AMX Xeon the int8
# peak came out highest at 1024² and bf16's at 2048², and repeated samples of one shape spread up to 3×
# (a shared host): one sample per precision is not a peak (docs/benchmarks.md).
PEAK_SHAPES = ((1024, 8), (2048, 4))


def gemm_peaks(threads: int | None = None, rounds: int = 1) -> dict:
    """Peaks per precision, measured in this run: fp32 (and, with OpenVINO, bf16 where the CPU has it,
    and int8), each the best of ``rounds`` × shapes samples taken in turn across precisions, so a noisy
    spell does not decide one precision's peak. Every engine row is compared with the peak of its own
    precision; each peak keeps its samples."""
    if importlib.util.find_spec("openvino") is None:  # the bf16 and int8 peaks are OpenVINO's GEMMs
        return {"fp32": gemm_peak(threads)}
    precisions = {"fp32": "f32", **({"bf16": "bf16"} if isa.has_bf16() else {}), "int8": "int8"}
    shapes = PEAK_SHAPES if rounds > 1 else PEAK_SHAPES[:1]
    samples: dict[str, list[dict]] = {name: [] for name in precisions}
    for _ in range(rounds):
        for name, precision in precisions.items():
            for n, chain in shapes:
                samples[name].append(openvino_gemm_peak(precision, threads, n=n, chain=chain))
    return {name: _best(got) for name, got in samples.items()}


def _best(samples: list[dict]) -> dict:
    rates = [round(s["gflops_per_s"], 1) for s in samples]
    return {**max(samples, key=lambda s: s["gflops_per_s"]), "samples": rates}


def merge_peaks(*measured: dict) -> dict:
    """Per precision, the higher of several peak measurements (e.g. before and after the timed rows),
    with all their samples."""
    merged: dict = {}
    for peaks in measured:
        for name, p in peaks.items():
            old = merged.get(name)
            samples = (old or {}).get("samples", []) + p.get("samples", [p["gflops_per_s"]])
            best = p if old is None or p["gflops_per_s"] > old["gflops_per_s"] else old
            merged[name] = {**best, "samples": samples}
    return merged
