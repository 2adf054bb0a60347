"""`dcube-edge serve` under load: real C-STORE senders against a real server process on loopback;
latencies and batch sizes read from the server's ledger through its own API."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from dcube_edge import runtimes

Log = Callable[[str], None]



def serve_load(engine: Path, senders: tuple[int, ...] = (1, 4, 16), per_sender: int = 16, log: Log = lambda _: None,
               images: list[Path] | None = None) -> list[dict]:
    """`dcube-edge serve` under load: for each sender count, a fresh server (subprocess, loopback) and that many
    concurrent C-STORE associations of ``per_sender`` instances each. Throughput is instances acknowledged and
    classified per second of wall time; latency is receipt → result from the ledger; batch sizes are the ones the
    batcher formed."""
    import shutil
    import socket
    import subprocess
    import sys
    import tempfile
    import threading
    import urllib.request

    from pydicom import dcmread
    from pydicom.uid import generate_uid
    from pynetdicom import AE, StoragePresentationContexts

    from dcube_edge.runtimes.serve import Ledger

    def port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    manifest = runtimes.read(engine)
    rows = []
    work = Path(tempfile.mkdtemp(prefix="dcube-serve-load-"))
    try:
        sources = _phantom_dicoms(work / "src", manifest.preprocess.size, per_sender * max(senders), images)
        for n in senders:
            spool, dport, hport = work / f"spool-{n}", port(), port()
            proc = subprocess.Popen([sys.executable, "-m", "dcube_edge.cli", "serve", str(engine), "--spool", str(spool),
                                     "--dicom-port", str(dport), "--http-port", str(hport)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                for _ in range(300):
                    try:
                        urllib.request.urlopen(f"http://127.0.0.1:{hport}/healthz", timeout=1).read()
                        break
                    except OSError:
                        time.sleep(0.1)
                log(f"serve load: {n} sender(s) × {per_sender}")
                datasets = [dcmread(f) for f in sources[: n * per_sender]]
                for ds in datasets:  # fresh UIDs per round
                    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()

                def sender(chunk: list, dport: int = dport) -> None:
                    ae = AE(ae_title="LOAD")
                    ae.requested_contexts = StoragePresentationContexts[:100]
                    assoc = ae.associate("127.0.0.1", dport, ae_title="DCUBE")
                    for ds in chunk:
                        assoc.send_c_store(ds)
                    assoc.release()

                start = time.perf_counter()
                threads = [threading.Thread(target=sender, args=(datasets[i::n],)) for i in range(n)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                ledger = Ledger(spool / "ledger.sqlite")  # the server's own records, read through its API
                while ledger.counts().get("pending", 0):
                    time.sleep(0.02)
                wall = time.perf_counter() - start
                got = ledger.timings()
                if len(got) != len(datasets):
                    raise RuntimeError(f"serve acknowledged {len(got)} of {len(datasets)} instances under load")
                lat = np.array([g[0] for g in got]) * 1e3
                batches = np.array([g[1] for g in got])
                rows.append({"senders": n, "instances": len(got), "throughput_per_s": len(got) / wall,
                             "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                             "batch_sizes": {int(b): int((batches == b).sum()) for b in np.unique(batches)}})
                ledger.close()
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def _phantom_dicoms(folder: Path, size: int, count: int, images: list[Path] | None) -> list[Path]:
    """Secondary-capture instances from the given images (or built-in phantoms) for load tests."""
    from PIL import Image
    from pydicom.uid import generate_uid

    from dcube_edge.phantoms import write_demo
    from dcube_edge.runtimes.dicom import write_secondary_capture

    if not images:
        write_demo(folder / "png", per_class=max(1, count // 3 + 1), size=size, seed=0)
        images = sorted((folder / "png").rglob("*.png"))
    study = generate_uid()
    return [write_secondary_capture(np.asarray(Image.open(images[i % len(images)]).convert("L")),
                                    folder / f"{i:05d}.dcm", study, "LOAD") for i in range(count)]
