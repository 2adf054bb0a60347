"""Which part of an OpenVINO bf16 engine breaks top-1 parity? (issue 12, README "parity")

Marks one module scope at a time f32 in a copy of an engine's fp32 IR (the same ``precise`` attribute the export
fallback writes), compiles it under a bf16 hint and compares its logits on a validation folder with the f32 IR.
Usage: python research/experiments/bf16_parity_groups.py ENGINE_DIR DATA_DIR   (DATA_DIR/val/<class>/...)"""
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.properties.hint as hints
from sklearn.metrics import roc_auc_score

from dcube_edge.export.openvino_ir import keep_f32
from dcube_edge.runtimes.manifest import read
from dcube_edge.runtimes.preprocess import load

GROUPS = {"none": [], "guide branch": ["head.resnet"], "whole head": ["head"], "trunk": ["trunk"]}

engine, data = Path(sys.argv[1]), Path(sys.argv[2])
man = read(engine)
paths = sorted(p for c in man.classes for p in (data / "val" / c).iterdir())
labels = np.array([man.classes.index(p.parent.name) for p in paths])
x = np.stack([load(p, man.preprocess) for p in paths]).astype(np.float32)
core = ov.Core()


def run(xml: Path, precision: str) -> tuple[np.ndarray, float]:
    model = core.read_model(str(xml))
    model.reshape({model.inputs[0].get_any_name(): [1, *x.shape[1:]]})
    req = core.compile_model(model, "CPU", {hints.inference_precision(): precision}).create_infer_request()
    out = np.concatenate([np.array(req.infer({0: x[i:i + 1]})[0]) for i in range(len(x))])
    times = []
    for i in range(min(60, len(x))):
        t = time.perf_counter()
        req.infer({0: x[i:i + 1]})
        times.append(time.perf_counter() - t)
    return out, float(np.median(times) * 1e3)


def auc(logits: np.ndarray) -> float:
    return float(roc_auc_score(labels, logits[:, 1] - logits[:, 0])) if len(man.classes) == 2 else float("nan")


ref, ms = run(Path(man.model_file), "f32")
print(json.dumps({"group": "all f32", "ms": round(ms, 2), "auc": round(auc(ref), 4)}))
for name, scopes in GROUPS.items():
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "model.xml"
        shutil.copy(man.model_file, xml)
        shutil.copy(Path(man.model_file).with_suffix(".bin"), xml.with_suffix(".bin"))
        marked = keep_f32(xml, scopes) if scopes else 0
        out, ms = run(xml, "bf16")
    print(json.dumps({"group": f"bf16, {name} f32", "layers_marked": marked, "ms": round(ms, 2),
                      "top1_agreement": round(float((out.argmax(1) == ref.argmax(1)).mean()), 4),
                      "max_abs_logit_diff": round(float(np.abs(out - ref).max()), 4),
                      "auc_delta": round(auc(out) - auc(ref), 4)}))
