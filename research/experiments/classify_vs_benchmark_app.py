"""`classify`'s engine time per call vs OpenVINO benchmark_app on the same IR, hint and batch (issue 12, README
"Latency"). Needs `make bench` engines in bench-out/. Usage: python research/experiments/classify_vs_benchmark_app.py
benchmark_app gets the batch's static shape (-shape), as the runner compiles it (since 2026-11-27; before, -data_shape
ran the dynamic-batch IR). The overhead is the median of the per-round ratios of back-to-back measurements, the order
swapped every round (since 2026-11-27 evening; before, the ratio of the two sides' medians over 3 alternated rounds:
the host's speed drifts within a minute by more than the gap being measured)."""
import json
import re
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, ".")
from dcube_edge import runtimes
from dcube_edge.runtimes import isa
from dcube_edge.runtimes.timing import rounds

ROUNDS = 5


def classify_ms(engine: Path, images: list[Path], batch: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "p.json"
        subprocess.run([".venv/bin/dcube-edge", "classify", str(engine), *map(str, images), "--batch-size", str(batch),
                        "--json", str(out)], check=True, capture_output=True)
        return json.loads(out.read_text())["engine_time"][str(batch)]["p50_ms"]


def benchmark_app_ms(manifest, batch: int) -> float:
    size = manifest.preprocess.size
    cmd = [".venv/bin/benchmark_app", "-m", str(manifest.model_file), "-d", "CPU", "-hint", "latency",
           "-infer_precision", manifest.record.precision_hint() or "f32",
           "-shape", f"{manifest.input_name}[{batch},1,{size},{size}]", "-t", "5"]
    text = subprocess.run(cmd, capture_output=True, text=True).stdout
    return float(re.search(r"Median:\s+([\d.]+) ms", text).group(1))


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
            got = rounds({"classify": partial(classify_ms, engine, images[:n], batch),
                          "benchmark_app": partial(benchmark_app_ms, m, batch)}, ROUNDS)
            pairs = list(zip(got["classify"], got["benchmark_app"]))
            ratios = [a / b for a, b in pairs]
            row = {"preset": preset, "precision": precision, "batch": batch,
                   "classify_p50_ms": float(np.median([a for a, _ in pairs])),
                   "benchmark_app_p50_ms": float(np.median([b for _, b in pairs])), "rounds": ROUNDS,
                   "overhead": float(np.median(ratios)) - 1, "overhead_per_round": [round(x - 1, 4) for x in ratios]}
            print(json.dumps(row), flush=True)
            rows.append(row)
Path("bench-out/classify_vs_benchmark_app.json").write_text(json.dumps({"machine": isa.describe(), "rows": rows}, indent=1))
