"""The console's screenshots in docs/serve.md (docs/figures/console-*.png), from generated phantom data only:
phantom DICOM instances with made-up demographics sent by C-STORE to a real `dcube-edge serve` (with a token), whose
stand-in PACS (a pynetdicom storage SCP) refuses a few SRs so that dead letters show; then Debian's Chromium, driven
by Playwright, logs in and photographs each page.

    python -m research.console_screenshots docs/figures [--engine ENGINE]     # make screenshots

Without ``--engine`` a random-weight ``tiny`` engine is made (`init`, `export`, `evaluate`, `card`): its decisions
mean nothing, and the pictures say so through the engine's intended use."""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

EXE = [sys.executable, "-m", "dcube_edge.cli"]
TOKEN = "screenshots-token-0123456789abcdef"
USE = "Demonstration on generated phantoms only (random weights); not for any clinical use."
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
REFUSED = (3, 7)  # the stand-in PACS refuses the SRs it is sent in these places (dead letters)


def run(*args: str, cwd: Path | None = None) -> None:
    subprocess.run([*EXE, *args], check=True, stdout=subprocess.DEVNULL, cwd=cwd)


def engine_of(work: Path) -> Path:
    """A random-weight tiny engine with a model card (about a minute on 2 cores)."""
    for step in (("demo-data", "data", "--per-class", "8", "--val-per-class", "8", "--size", "32"),
                 ("init", "run", "--preset", "tiny"), ("export", "run", "--out", "engine", "--intended-use", USE),
                 ("evaluate", "engine", "phantoms", "--json", "eval.json"), ("card", "engine", "--eval", "eval.json")):
        run(*step, cwd=work)
        if step[0] == "demo-data":
            (work / "data" / "val").rename(work / "phantoms")  # as the card names it
    return work / "engine"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pacs(port: int):
    """A storage SCP that keeps SRs, except those it is sent in the places of REFUSED."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import ComprehensiveSRStorage

    sent = [0]

    def keep(event):
        sent[0] += 1
        return 0xC000 if sent[0] in REFUSED else 0x0000

    ae = AE(ae_title="PACS")
    ae.add_supported_context(ComprehensiveSRStorage)
    return ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, keep)])


def send(work: Path, port: int) -> int:
    """Phantom instances with made-up patients, by C-STORE; how many."""
    from pydicom import dcmread
    from pynetdicom import AE, StoragePresentationContexts

    run("demo-data", str(work / "scans"), "--per-class", "4", "--size", "64", "--seed", "7", "--dicom")
    ae = AE(ae_title="SCANNER")
    ae.requested_contexts = StoragePresentationContexts[:100]
    assoc = ae.associate("127.0.0.1", port, ae_title="DCUBE")
    files = sorted((work / "scans").rglob("*.dcm"))
    for i, f in enumerate(files):
        ds = dcmread(f)
        ds.PatientName, ds.PatientID = f"PHANTOM^CASE{i + 1:02d}", f"PH{1000 + i // 2}"
        ds.AccessionNumber, ds.StudyDate = f"ACC{2026120 + i}", f"202612{1 + i % 7:02d}"
        assoc.send_c_store(ds)
    assoc.release()
    return len(files)


def settle(base: str, n: int, timeout: float = 120) -> None:
    """Wait until every instance has its result and every delivery is decided."""
    import json

    deadline = time.time() + timeout
    while time.time() < deadline:
        request = urllib.request.Request(f"{base}/healthz")
        with urllib.request.urlopen(request, timeout=5) as r:
            counts = json.loads(r.read())
        if counts.get("done", 0) >= n:
            time.sleep(3)  # the reporter and the forwarder
            return
        time.sleep(0.5)
    raise RuntimeError("the node did not classify the phantoms in time")


def photograph(base: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 860}, device_scale_factor=1)
        page.goto(f"{base}/ui/login")
        page.screenshot(path=str(out / "console-login.png"))
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        for name, path in (("overview", "/ui/"), ("results", "/ui/results"), ("deliveries", "/ui/deliveries"),
                           ("engine", "/ui/engine")):
            page.goto(base + path)
            page.screenshot(path=str(out / f"console-{name}.png"))
        page.goto(f"{base}/ui/deliveries")
        page.locator("table.dead a").first.click()
        page.screenshot(path=str(out / "console-instance.png"), full_page=True)
        browser.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m research.console_screenshots", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--engine", type=Path, help="an engine to serve (default: a random-weight tiny one)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        engine = args.engine or engine_of(work)
        (work / "token").write_text(TOKEN)
        scp_port, dicom, http = free_port(), free_port(), free_port()
        scp = pacs(scp_port)
        node = subprocess.Popen([*EXE, "serve", str(engine), "--spool", str(work / "spool"), "--token-file",
                                 str(work / "token"), "--dicom-port", str(dicom), "--http-port", str(http),
                                 "--forward", f"PACS@127.0.0.1:{scp_port}",
                                 "--viewer-url", "http://127.0.0.1:3000/viewer?StudyInstanceUIDs={study}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{http}"
        try:
            for _ in range(120):
                try:
                    urllib.request.urlopen(f"{base}/readyz", timeout=2).read()
                    break
                except OSError:
                    time.sleep(0.5)
            settle(base, send(work, dicom))
            photograph(base, args.out)
        finally:
            node.terminate()
            node.wait(timeout=30)
            scp.shutdown()
    print(f"wrote {', '.join(sorted(p.name for p in args.out.glob('console-*.png')))} to {args.out}")


if __name__ == "__main__":
    main()
