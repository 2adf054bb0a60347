"""The monitor in a running node (`dcube-edge serve`, real C-STORE): observations in the ledger and the result's
JSON, a new manufacturer against the site baseline raising an alert where operators look (/metrics, one log line,
one audit record, `monitor SPOOL --json`) without touching /readyz, and labels (CSV by accession, HTTP POST with the
token) that contradict the card raising the performance alert."""
from __future__ import annotations

import json
import time
import urllib.request

import numpy as np
import pytest

pytest.importorskip("pynetdicom", reason="serve needs the `serve` extra (pynetdicom)")
pytest.importorskip("scipy", reason="the monitor needs the `serve` extra (scipy)")

from commands import cli  # noqa: E402
from serving import Server, dicom_of, groups_of, send  # noqa: E402

TOKEN = "a-token-of-sixteen-chars-or-more"


def scans(demo_data, folder, n: int, maker: str, start: int) -> list:
    from pydicom import dcmread
    from pydicom.uid import generate_uid

    pngs = sorted((demo_data / "train").rglob("*.png"))
    pngs = [pngs[i] for i in np.random.default_rng(0).permutation(len(pngs))]  # the classes mixed, as a site's are
    out = []
    for i in range(n):
        f = dicom_of(pngs[(start + i) % len(pngs)], folder / f"{maker}{i}.dcm")
        ds = dcmread(f)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.Manufacturer, ds.AccessionNumber = maker, f"ACC{start + i}"
        ds.save_as(f, enforce_file_format=True)
        out.append(f)
    return out


def metric(text: str, name: str) -> float | None:
    found = [line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(name)]
    return float(found[0]) if found else None


def test_the_node_monitors_its_stream_and_alerts_where_operators_look(ort_engine, demo_data, tmp_path):
    token = tmp_path / "token"
    token.write_text(TOKEN)
    spool = tmp_path / "spool"
    log = tmp_path / "serve.log"
    server = Server(ort_engine, spool, "--monitor-window", "50", "--monitor-baseline", "50", "--token-file",
                    str(token), log=log)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    try:
        site = scans(demo_data, tmp_path, 60, "Acme", 0)
        assert send(server.dicom, site) == [0] * 60
        uid = str(__import__("pydicom").dcmread(site[0]).SOPInstanceUID)
        first = server.result(uid, headers=auth)
        assert first["ood_score"] is not None and first["ood_score"] >= 0
        sr = __import__("pydicom").dcmread(spool / "results" / f"{first['result_sr']}.dcm")
        said = [i.TextValue for g in groups_of(sr) for i in g.ContentSequence if i.ValueType == "TEXT"]
        assert f"input out-of-distribution score {first['ood_score']:.2f}" in " ".join(said)
        assert send(server.dicom, scans(demo_data, tmp_path, 50, "Initech", 60)) == [0] * 50
        deadline = time.time() + 60
        while time.time() < deadline and metric(server.get("/metrics", auth), 'dcube_monitor_alert{check="metadata-mix"}') != 1:
            time.sleep(0.3)
        metrics = server.get("/metrics", auth)
        assert metric(metrics, 'dcube_monitor_alert{check="metadata-mix"}') == 1
        assert metric(metrics, 'dcube_monitor_threshold{check="metadata-mix"}') == pytest.approx(1e-5)
        assert server.get("/readyz")["status"] == "ready"
        with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{server.http}/ui/", headers=auth),
                                    timeout=10) as r:
            assert "monitor: metadata-mix" in r.read().decode()  # the console's overview shows it
        lines = [line for line in log.read_text().splitlines() if "monitor-alert" in line]
        assert len(lines) == 1 and "metadata-mix" in lines[0] and "Initech" in lines[0], lines
        audit = [line for line in (spool / "audit.log").read_text().splitlines() if "monitor alert" in line]
        assert len(audit) == 1 and "110100" in audit[0] and 'csd-code="ALERT-STARTED"' in audit[0]

        res = cli("monitor", spool, "--json", tmp_path / "m.json", "--plot", tmp_path / "plots", check=0)
        assert "ALERT" in res.stdout
        found = json.loads((tmp_path / "m.json").read_text())
        alert = next(a for a in found["alerts"] if a["name"] == "metadata-mix")
        assert set(alert) >= {"name", "since", "statistic", "threshold", "window"}
        assert alert["statistic"] < alert["threshold"] and alert["window"] == "last 50"
        assert (tmp_path / "plots" / "input-intensity_mean.png").stat().st_size > 0

        # truth that contradicts the card: every call of the first 60 labelled as another class
        calls = {a: server.result(str(__import__("pydicom").dcmread(f).SOPInstanceUID), headers=auth)["label"]
                 for a, f in zip(range(60), site)}
        classes = list(first["probs"])
        other = {c: classes[(classes.index(c) + 1) % len(classes)] for c in classes}
        csv = tmp_path / "labels.csv"
        csv.write_text("accession_number,label\n" + "".join(f"ACC{a},{other[c]}\n" for a, c in calls.items())
                       + "ACC999,benign\nACC0,not-a-class\n")
        res = cli("spool", "label", spool, csv, "--json", tmp_path / "l.json", check=1)  # two rows not taken
        (tmp_path / "utf16.csv").write_bytes("label,sop_instance_uid\n".encode("utf-16"))
        assert "not UTF-8 text" in cli("spool", "label", spool, tmp_path / "utf16.csv", check=2).stderr
        imported = json.loads((tmp_path / "l.json").read_text())
        assert imported["labelled"] == 60 and imported["unmatched"] == ["ACC999"]
        assert imported["unknown_class"] == ["ACC0: 'not-a-class'"]
        assert any(c["alarming"] for c in imported["performance"]["classes"])
        sens = imported["performance"]["classes"][0]["site"]["sensitivity"]
        assert sens["value"] == 0.0 and 0 <= sens["low"] <= sens["high"] < 0.5

        request = urllib.request.Request(f"http://127.0.0.1:{server.http}/v1/labels", data=json.dumps(
            {"labels": [{"sop_instance_uid": uid, "label": other[first["label"]]}]}).encode(),
            headers={**auth, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:
            assert json.loads(r.read())["labelled"] == 1
        metrics = server.get("/metrics", auth)
        assert metric(metrics, 'dcube_monitor_alert{check="performance"}') == 1
        try:
            urllib.request.urlopen(urllib.request.Request(request.full_url, data=b"label,sop_instance_uid\n"),
                                   timeout=10)
            raise AssertionError("labels were taken without the token")
        except urllib.error.HTTPError as e:
            assert e.code == 401
    finally:
        server.stop()
