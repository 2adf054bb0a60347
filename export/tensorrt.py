"""TensorRT plan builder (TensorRT 10.12+/11): the precision's ONNX parsed into a STRONGLY_TYPED
network (precision comes from the graph's types and Q/DQ nodes; no BuilderFlag.FP16/INT8, no
calibrator), one optimization profile for the manifest's batch range, a workspace limit, and a
timing cache kept beside the plan."""
from __future__ import annotations

from typing import TYPE_CHECKING

from dcube_edge.errors import DcubeError
from dcube_edge.runtimes.choices import Choices, TensorRTChoices
from dcube_edge.runtimes.trt import import_tensorrt

from .builder import Builder, Built

if TYPE_CHECKING:
    from .job import BuildJob

WORKSPACE_BYTES = 2 << 30


class TensorRTBuilder(Builder):
    def build(self, job: BuildJob) -> Built:
        return build_plan(job)

    def tool_versions(self) -> dict[str, str]:
        import tensorrt

        return {"tensorrt": tensorrt.__version__}

    def effective_precision(self, job: BuildJob, choices: Choices | None) -> dict[str, str]:
        return job.policy.qdq_parts(job.precision)  # the same precision ONNX, the same parts


def build_plan(job: BuildJob) -> Built:
    made = job.precision_onnx()
    onnx_path, work, spec, log = made.path, job.work, job.spec, job.log
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # 10.x: strong typing is opt-in; 11.x: always on, the flag is kept but ignored (and may go).
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise DcubeError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    profile = builder.create_optimization_profile()
    for t in spec.inputs:
        b = spec.batch
        profile.set_shape(t.name, spec.shape(t, b["min"]), spec.shape(t, b["opt"]), spec.shape(t, b["max"]))
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    log(f"building TensorRT plan (strongly typed, batch {spec.batch['min']}..{spec.batch['max']})")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise DcubeError("TensorRT failed to build the engine; see the messages above")
    (work / "model.plan").write_bytes(bytes(plan))
    (work / "timing.cache").write_bytes(bytes(config.get_timing_cache().serialize()))
    choices = TensorRTChoices(strongly_typed=True, workspace_bytes=WORKSPACE_BYTES, profile=dict(spec.batch),
                              timing_cache="timing.cache")
    return Built("model.plan", choices, made.recipe, made.calibration_set)
