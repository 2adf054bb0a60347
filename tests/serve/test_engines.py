"""Engine versions in a running node (runtimes/serve/engines.py, shadow.py): a shadow engine classifies every
instance, its results are recorded and never delivered; promote and rollback while instances arrive lose nothing,
every result names the engine that produced it, and an engine that fails verification never becomes active."""
from __future__ import annotations

import shutil
import sqlite3
import threading
import time

import pytest

pytest.importorskip("pynetdicom", reason="serve needs the `serve` extra (pynetdicom)")

from commands import cli  # noqa: E402
from serving import Pacs, Server, dicom_of, free_port, send, source_of  # noqa: E402

TOKEN = "a-token-of-sixteen-chars-or-more"


@pytest.fixture(scope="module")
def fp16_engine(tiny_run, tmp_path_factory):
    from dcube_edge.export.build import ExportOptions, export

    out = tmp_path_factory.mktemp("engines") / "tiny-ort-fp16"
    export(tiny_run, out, ExportOptions(max_batch=16, precision="fp16"), log=lambda *_: None)
    return out


def instances(demo_data, folder, n: int) -> list:
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    pngs = sorted((demo_data / "train").rglob("*.png"))
    out = []
    for i in range(n):
        f = dicom_of(pngs[i % len(pngs)], folder / f"i{i}.dcm")
        ds = dcmread(f)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(f, enforce_file_format=True)
        out.append((f, str(ds.SOPInstanceUID)))
    return out


def done(spool) -> int:
    with sqlite3.connect(spool / "ledger.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM instances WHERE status = 'done'").fetchone()[0]


def wait_for(condition, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.1)


def test_shadow_promote_and_rollback_under_load(ort_engine, fp16_engine, demo_data, tmp_path):
    fp16_engine = shutil.copytree(fp16_engine, tmp_path / "shadow")  # its files are changed below
    token = tmp_path / "token"
    token.write_text(TOKEN)
    spool, pacs_port = tmp_path / "spool", free_port()
    pacs = Pacs(pacs_port)
    server = Server(ort_engine, spool, "--shadow", str(fp16_engine), "--token-file", str(token), "--forward",
                    f"PACS@127.0.0.1:{pacs_port}", "--max-batch", "4")
    node = f"http://127.0.0.1:{server.http}"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    sent = instances(demo_data, tmp_path, 60)
    statuses: list = []
    try:
        def sender() -> None:
            for k in range(6):  # six associations, one after another, while the engine is switched
                statuses.extend(send(server.dicom, [f for f, _ in sent[k * 10:(k + 1) * 10]]))
                time.sleep(0.3)

        thread = threading.Thread(target=sender)
        thread.start()
        wait_for(lambda: done(spool) >= 10)
        promoted = cli("engine", "promote", "--node", node, "--token-file", token, check=0)
        assert "active: " + str(fp16_engine) in promoted.stdout.replace("\n", "")
        wait_for(lambda: done(spool) >= 35)
        cli("engine", "rollback", "--node", node, "--token-file", token, check=0)
        thread.join(120)
        assert statuses == [0] * 60
        wait_for(lambda: done(spool) == 60)
        results = [server.result(uid, headers=auth) for _, uid in sent]
        engines = {r["engine_sha256"] for r in results}
        assert len(engines) == 2  # both engines gave results, each result names its own
        assert all(r["engine"]["sha256"] == r["engine_sha256"] and r["engine"]["name"] for r in results)
        # the promoted engine is watched as the first one was: its results carry their inputs' OOD score
        assert all(r["ood_score"] is not None for r in results), [r["engine"]["name"] for r in results
                                                                   if r["ood_score"] is None]
        wait_for(lambda: len(pacs.received) >= 60)
        time.sleep(1)
        # one SR per instance, the active engine's: the shadow's results never went anywhere
        assert sorted(source_of(sr) for sr in pacs.received) == sorted(uid for _, uid in sent)
        with sqlite3.connect(spool / "ledger.sqlite") as db:
            shadowed = db.execute("SELECT COUNT(DISTINCT uid) FROM shadow_results").fetchone()[0]
        assert shadowed == 60
        state = server.get("/v1/engine", auth)
        actions = [(h["action"], h["outcome"]) for h in state["history"]]
        assert actions == [("start", "active with a shadow"), ("promote", "switched"), ("rollback", "switched")]
        assert state["active"]["sha256"] == results[0]["engine_sha256"]
        assert state["agreement"]["compared"] > 0

        # a shadow whose files changed after it was loaded is refused, and the active engine stays
        (fp16_engine / "model.onnx").write_bytes((fp16_engine / "model.onnx").read_bytes() + b"\0")
        refused = cli("engine", "promote", "--node", node, "--token-file", token, check=2)
        assert "sha256" in refused.stderr and "refused the promote (409)" in refused.stderr
        assert server.get("/v1/engine", auth)["active"] == state["active"]
        assert server.get("/v1/engine", auth)["history"][-1]["outcome"].startswith("refused")
        audit = (spool / "audit.log").read_text()
        assert "engine promote:" in audit and "engine promote refused" in audit
        switches = [line for line in audit.splitlines() if "engine promote" in line]
        assert all('csd-code="110113"' in line and 'csd-code="110131"' in line for line in switches), switches
    finally:
        server.stop()
        pacs.stop()


def test_a_shadow_that_fails_verification_stops_the_start_naming_it(ort_engine, tmp_path):
    bad = shutil.copytree(ort_engine, tmp_path / "bad")
    (bad / "model.onnx").write_bytes((bad / "model.onnx").read_bytes() + b"\0")
    res = cli("serve", ort_engine, "--spool", tmp_path / "spool", "--shadow", bad, "--http-port", free_port(),
              "--dicom-port", free_port(), check=2)
    assert f"--shadow {bad}:" in res.stderr and "does not match its sha256" in res.stderr
    assert not (tmp_path / "spool").exists()  # refused before anything was created


def test_an_engine_is_not_its_own_shadow(ort_engine, tmp_path):
    """`--shadow` naming the active engine was accepted: every instance classified twice to compare it with itself."""
    res = cli("serve", ort_engine, "--spool", tmp_path / "spool", "--shadow", ort_engine, check=2)
    assert "it is the active engine itself" in res.stderr and not (tmp_path / "spool").exists()
