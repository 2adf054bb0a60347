"""`classify`'s engine time per call vs OpenVINO benchmark_app on the same IR, hint and batch (issue 12, README
"Latency"). Needs `make bench` engines in bench-out/. Usage: python benchmarks/experiments/classify_vs_benchmark_app.py
benchmark_app gets the batch's static shape (-shape), as the runner compiles it (since 2026-11-27; before, -data_shape
ran the dynamic-batch IR)."""
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, ".")
from dcube_edge.runtimes import isa

from dcube_edge import runtimes

images = sorted(Path("bench-out/phantoms").rglob("*.png"))
images = (images * 4)[:480]
rows = []
for preset in ("small", "paper"):
    for precision in ("fp32", "bf16", "int8"):
        engine = Path(f"bench-out/{preset}/engines/openvino-{precision}")
        if not engine.is_dir():  # bf16 is not built on a CPU without it
            continue
        m = runtimes.read(engine)
        for batch in (1, 8):
            n = batch * (60 if preset == "small" else 12)
            ours, theirs = [], []
            for _ in range(3):  # alternated: the machine's load drifts
                with tempfile.TemporaryDirectory() as tmp:
                    out = Path(tmp) / "p.json"
                    subprocess.run([".venv/bin/dcube-edge", "classify", str(engine), *map(str, images[:n]),
                                    "--batch-size", str(batch), "--json", str(out)], check=True, capture_output=True)
                    ours.append(json.loads(out.read_text())["engine_time"][str(batch)]["p50_ms"])
                cmd = [".venv/bin/benchmark_app", "-m", str(m.model_file), "-d", "CPU", "-hint", "latency",
                       "-infer_precision", m.data["openvino"]["inference_precision"],
                       "-shape", f"{m.input_name}[{batch},1,{m.preprocess.size},{m.preprocess.size}]", "-t", "5"]
                text = subprocess.run(cmd, capture_output=True, text=True).stdout
                theirs.append(float(re.search(r"Median:\s+([\d.]+) ms", text).group(1)))
            row = {"preset": preset, "precision": precision, "batch": batch, "classify_p50_ms": float(np.median(ours)),
                   "benchmark_app_p50_ms": float(np.median(theirs)), "rounds": 3}
            row["overhead"] = row["classify_p50_ms"] / row["benchmark_app_p50_ms"] - 1
            print(json.dumps(row), flush=True)
            rows.append(row)
Path("bench-out/classify_vs_benchmark_app.json").write_text(json.dumps({"machine": isa.describe(), "rows": rows}, indent=1))
