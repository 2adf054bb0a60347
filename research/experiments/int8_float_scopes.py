"""ONNX Runtime int8: which calibration method and which float scopes keep parity? (issue 12, README "parity")

Quantizes an fp32 ONNX Runtime engine's graph with each (method, scopes kept float) pair and compares its logits
on a validation folder with the fp32 graph.
Usage: python research/experiments/int8_float_scopes.py ENGINE_DIR DATA_DIR CALIBRATION.npz  (DATA_DIR/val/<class>/...)"""
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from sklearn.metrics import roc_auc_score

from dcube_edge.calibration import int8
from dcube_edge.runtimes.manifest import read
from dcube_edge.runtimes.preprocess import load

TRIALS = [("minmax", ["head.resnet"]), ("percentile", ["head.resnet"]), ("entropy", ["head.resnet"]),
          ("minmax", ["head.resnet", "trunk.patch_embed", "trunk.in_blocks.0"]), ("minmax", ["head"])]

engine, data = Path(sys.argv[1]), Path(sys.argv[2])
calib = np.load(sys.argv[3])
calib = calib[calib.files[0]] if hasattr(calib, "files") else calib
man = read(engine, verify=False)
paths = sorted(p for c in man.classes for p in (data / "val" / c).iterdir())
y = np.array([man.classes.index(p.parent.name) for p in paths])
x = np.stack([load(p, man.preprocess) for p in paths]).astype(np.float32)


def logits(path: Path) -> np.ndarray:
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {s.get_inputs()[0].name: x[i:i + 16]})[0] for i in range(0, len(x), 16)])


ref = logits(engine / "model.onnx")
auc_ref = roc_auc_score(y, ref[:, 1] - ref[:, 0])
for method, keep in TRIALS:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.time()
        info = int8.quantize(engine / "model.onnx", Path(tmp) / "q.onnx", calib, man.input_name, method=method, keep_float=keep)
        out = logits(Path(tmp) / "q.onnx")
    print(json.dumps({"method": method, "keep_float": keep, "top1_agreement": float((out.argmax(1) == ref.argmax(1)).mean()),
                      "auc_delta": round(roc_auc_score(y, out[:, 1] - out[:, 0]) - auc_ref, 4),
                      "max_abs_logit_diff": round(float(np.abs(out - ref).max()), 3),
                      "kept_float_nodes": info.kept_float_nodes, "seconds": round(time.time() - t)}))
