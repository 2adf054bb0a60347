"""OpenVINO runner: ``import openvino as ov``, explicit inference precision, latency hint, and a
compiled-model cache dir so the second start skips compilation: one sub-folder per CPU class and precision,
because OpenVINO's CPU cache does not key its blobs on the inference-precision hint
(docs/decisions/openvino-precision.md).

Each batch size gets its own compiled model with a static input shape (compiled on first use, batch 1 at
activation): a static shape runs faster than the dynamic-batch IR (fewer reorders around the int8 kernels)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dcube_edge.errors import BackendUnavailable

from . import isa
from .base import Runner
from .spec import GraphSpec


class OpenVINORunner(Runner):
    name = "openvino"
    op_times_per_call = True  # PERF_COUNT describes the last inference only

    def __init__(self, model: str | Path, precision: str = "f32", threads: int | None = None,
                 device: str = "CPU", cache_dir: str | Path | None = None, profile: bool = False,
                 spec: GraphSpec | None = None):
        super().__init__(spec)
        self.model, self.precision, self.threads, self.device = Path(model), precision, threads, device
        self.cache_dir, self.profile = cache_dir, profile

    @classmethod
    def from_manifest(cls, manifest, threads=None, device=None, profile=False) -> OpenVINORunner:
        """The manifest's inference-precision hint; the compiled-model cache beside the engine."""
        return cls(manifest.model_file, precision=manifest.record.precision_hint() or "f32",
                   threads=threads, device=device or "CPU", cache_dir=manifest.dir / "ov_cache", profile=profile,
                   spec=manifest.spec)

    def activate_impl(self) -> None:
        try:
            import openvino as ov
            import openvino.properties as props
            import openvino.properties.hint as hints
        except ImportError:
            raise BackendUnavailable("OpenVINO is not installed: pip install 'dcube-edge[openvino]'") from None
        core = ov.Core()
        precision = self.precision
        if (precision == "bf16" and not isa.has_bf16()) or (precision == "f16" and not isa.has_native_fp16()):
            precision = "f32"  # an engine built elsewhere: this CPU lacks the unit; compiled_precision says so
        if self.cache_dir:
            try:
                cache = Path(self.cache_dir) / f"{isa.tag()}-{precision}"
                cache.mkdir(parents=True, exist_ok=True)
                core.set_property({props.cache_dir(): str(cache)})
            except OSError:
                pass  # read-only engine dir: run without the compiled-blob cache
        config = {hints.inference_precision(): precision,
                  hints.performance_mode(): hints.PerformanceMode.LATENCY}
        if self.threads:
            config[props.inference_num_threads()] = self.threads
        if self.profile:
            config[props.enable_profiling()] = True
        self.core, self.config = core, config
        self.network = core.read_model(str(self.model))
        self.input_names = [i.get_any_name() for i in self.network.inputs]
        self.output_names = [o.get_any_name() for o in self.network.outputs]
        self.by_batch: dict[int, tuple] = {}
        self.compiled, self.request, _ = self._for_batch(1)

    def _for_batch(self, batch: int) -> tuple:
        """(compiled model, infer request, the request's own input arrays) for a static batch size,
        compiled on first use."""
        if batch not in self.by_batch:
            model = self.network.clone()
            model.reshape({name: [batch, *model.input(name).get_partial_shape()[1:]] for name in self.input_names})
            compiled = self.core.compile_model(model, self.device.upper(), self.config)
            request = compiled.create_infer_request()
            inputs = {name: request.get_tensor(name).data for name in self.input_names}
            self.by_batch[batch] = (compiled, request, inputs)
        return self.by_batch[batch]

    def compiled_precision(self) -> str:
        import openvino.properties.hint as hints

        value = self.compiled.get_property(hints.inference_precision())
        return value.get_type_name() if hasattr(value, "get_type_name") else str(value)

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Copies the feed into the request's own input tensors and infers on them, as benchmark_app does:
        handing OpenVINO new input arrays each call (``infer(feed)``, shared or copied) rebinds the request's
        inputs and cost 2-3 % per call on the small int8 engine (8.2 ms, VNNI Xeon; copying in: 0.5 %)."""
        batch = int(next(iter(feed.values())).shape[0])
        self.compiled, self.request, inputs = self._for_batch(batch)
        for name, array in feed.items():
            if array.shape != inputs[name].shape:  # copyto would broadcast; a runner without a spec must still refuse
                raise ValueError(f"input {name!r} has shape {array.shape}, the engine takes {inputs[name].shape}")
            np.copyto(inputs[name], array)
        self.request.infer()
        return {name: self.request.get_tensor(name).data.copy() for name in self.output_names}

    def op_times(self) -> list[tuple[str, float, str]]:
        """PERF_COUNT of the last inference: (layer type, ms, kernel such as brgemm_avx512_amx_I8)."""
        import openvino as ov

        done = ov.ProfilingInfo.Status.EXECUTED
        return [(i.node_type, i.real_time.total_seconds() * 1e3, i.exec_type)
                for i in self.request.get_profiling_info() if i.status == done]

    def deactivate_impl(self) -> None:
        self.request = self.compiled = self.network = self.core = None
        self.by_batch = {}


def benchmark_app_ms(manifest, batch: int, seconds: int, threads: int | None = None) -> float:
    """OpenVINO's own ``benchmark_app`` on the engine's IR, hint and the batch's static shape (``-shape``, as
    the runner compiles it): its median latency in ms (it prints microseconds below a millisecond)."""
    import re
    import shutil
    import subprocess
    import sys

    tool = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    hint = manifest.record.precision_hint() or "f32"
    size = manifest.preprocess.size
    cmd = [tool, "-m", str(manifest.model_file), "-d", "CPU", "-hint", "latency", "-infer_precision", hint,
           "-shape", f"{manifest.input_name}[{batch},1,{size},{size}]", "-t", str(seconds)]
    if threads:
        cmd += ["-nthreads", str(threads)]
    text = subprocess.run(cmd, capture_output=True, text=True, timeout=300).stdout
    found = re.search(r"Median:\s+([\d.]+) (ms|us)", text)
    if not found:
        raise RuntimeError(f"benchmark_app printed no median latency: {text[-300:]}")
    return float(found.group(1)) / (1000.0 if found.group(2) == "us" else 1.0)

