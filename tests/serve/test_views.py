"""The node reads what `classify` reads (issue 37): colour in every photometric form, cine loops frame by frame and
the tissue regions of an ultrasound screen, each view's result kept in the ledger, `GET /v1/results/{uid}`, the
console and the result SR (frames referenced by number, regions as image regions). Real peers: a pynetdicom SCU,
DCMTK's storescu as the modality and Orthanc as the PACS."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pynetdicom", reason="serve needs the `serve` extra (pynetdicom)")
pytest.importorskip("highdicom", reason="serve needs the `serve` extra (highdicom)")

from commands import EXE  # noqa: E402
from dicom_forms import colour_forms, dciodvfy, tinted  # noqa: E402
from PIL import Image  # noqa: E402
from serving import Orthanc, Server  # noqa: E402

from dcube_edge import runtimes  # noqa: E402


def send_as_stored(port: int, files: list[Path]) -> list[int | None]:
    """C-STORE each file in its own transfer syntax, as a modality holding it proposes it; the status per file."""
    from pydicom import dcmread
    from pynetdicom import AE

    datasets = [dcmread(f) for f in files]
    ae = AE(ae_title="SCANNER")
    for sop, syntax in sorted({(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in datasets}):
        ae.add_requested_context(sop, [syntax])
    assoc = ae.associate("127.0.0.1", port, ae_title="DCUBE")
    assert assoc.is_established
    statuses = []
    for ds in datasets:
        status = assoc.send_c_store(ds)
        statuses.append(int(status.Status) if status else None)
    assoc.release()
    return statuses


def uid_of(path: Path) -> str:
    from pydicom import dcmread

    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def close(got: dict, want: dict, tol: float = 1e-6) -> bool:
    return got.keys() == want.keys() and all(abs(got[c] - want[c]) <= tol for c in want)


def referenced_frames(sr) -> list[tuple[int | None, bool]]:
    """(Referenced Frame Number, as an image region) of every image reference in the SR's content tree."""
    found = []

    def walk(items, region: bool = False) -> None:
        for item in items:
            if item.ValueType == "IMAGE":
                ref = item.ReferencedSOPSequence[0]
                found.append((int(ref.ReferencedFrameNumber) if "ReferencedFrameNumber" in ref else None, region))
            walk(item.get("ContentSequence", []), item.ValueType == "SCOORD")

    walk(sr.ContentSequence)
    return found


def test_every_colour_form_gives_the_colour_pngs_result_through_the_node(ort_engine, demo_data, tmp_path):
    """Phantoms, tinted, in the thirteen colour forms (RGB interleaved, planar, 16-bit, RLE, JPEG-LS; YBR_FULL;
    YBR_FULL_422 JPEG baseline and uncompressed; YBR_RCT and YBR_ICT JPEG 2000; PALETTE COLOR 8-bit, 16-bit,
    segmented), each C-STOREd in its own transfer syntax: every one is accepted and gets the label and calibrated
    probabilities `classify` gives a colour PNG of the pixels it decodes to, read whole as one view."""
    pngs = [sorted((demo_data / "val" / c).iterdir())[0] for c in ("benign", "malignant")]
    files, twins = [], []
    for i, png in enumerate(pngs):
        for dcm, pixels in colour_forms(tinted(png), tmp_path / f"p{i}").values():
            twin = dcm.with_name(f"{dcm.stem}-twin.png")
            Image.fromarray(pixels).save(twin)
            files.append(dcm)
            twins.append(twin)
    assert len(files) == 26
    with runtimes.load(ort_engine) as clf:
        want = [(p.label, p.probs) for p in clf.classify(twins)]
    server = Server(ort_engine, tmp_path / "spool")
    try:
        assert send_as_stored(server.dicom, files) == [0] * len(files)
        for f, (label, probs) in zip(files, want):
            r = server.result(uid_of(f))
            assert r["status"] == "done" and (r["label"], r["probs"]) == (label, probs), f
            assert r["regions"] == "whole frame" and r["number_of_frames"] == 1
            assert [(v["frame"], v["region"], v["probs"]) for v in r["frames"]] == [(None, None, probs)]
    finally:
        server.stop()


def screens(pngs: list[Path], tmp_path: Path) -> dict[str, Path]:
    """Scanner-like objects (native RGB, annotations around the tissue) of the phantoms: a loop of three frames,
    its first frame as a single-frame object, a dual view of the first two, and a loop of four frames."""
    from dcube_edge.scanner import layout, screen, write_us

    tissue = [np.asarray(Image.open(p).convert("L")) for p in pngs]
    size = tissue[0].shape[0]
    one, two = layout(size, 1), layout(size, 2)
    return {"loop": write_us(tmp_path / "loop.dcm", [screen([t], n, 1) for n, t in enumerate(tissue[:3])], one),
            "first": write_us(tmp_path / "first.dcm", [screen([tissue[0]], 0, 1)], one),
            "dual": write_us(tmp_path / "dual.dcm", [screen(tissue[:2], 0, 2)], two),
            "long": write_us(tmp_path / "long.dcm", [screen([t], n, 3) for n, t in enumerate(tissue[:4])], one)}


def test_a_loop_gives_a_result_per_frame_and_a_dual_view_one_per_view(ort_engine, demo_data, tmp_path):
    """A three-frame loop with a tissue region: one result per frame, each that of its tissue saved as a PNG (the
    annotations around it change nothing), the first that of the same frame sent as a single-frame object; the
    instance's probabilities the bound policy's combination of the frames'. A dual view: one result per tissue
    region. POST /v1/classify answers with the views too. A loop over --max-frames: refused with 0xC003 and the reason. The SR references each frame by number
    and each region as an image region, and dciodvfy accepts it; the console shows the views."""
    from pydicom import dcmread

    from dcube_edge.runtimes.instance import combine

    pngs = [sorted((demo_data / "val" / c).iterdir())[0] for c in ("benign", "malignant", "normal", "benign")]
    objects = screens(pngs, tmp_path)
    with runtimes.load(ort_engine) as clf:
        alone = [p.probs for p in clf.classify(pngs[:3])]
        policy, decision, classes = clf.spec.instance, clf.decision, clf.classes
    spool = tmp_path / "spool"
    server = Server(ort_engine, spool, "--max-frames", "3")
    try:
        statuses = send_as_stored(server.dicom, list(objects.values()))
        assert statuses == [0, 0, 0, 0xC003], statuses
        loop, first, dual = (server.result(uid_of(objects[k])) for k in ("loop", "first", "dual"))
        assert loop["number_of_frames"] == 3 and loop["regions"] == "ultrasound tissue regions"
        assert [(v["frame"], v["region"]) for v in loop["frames"]] == [(1, 1), (2, 1), (3, 1)]
        assert all(close(v["probs"], p) for v, p in zip(loop["frames"], alone))
        assert close(first["frames"][0]["probs"], loop["frames"][0]["probs"]) and first["frames"][0]["frame"] is None
        rows = np.array([[v["probs"][c] for c in classes] for v in loop["frames"]])
        combined = combine(rows, policy)
        assert loop["instance_policy"] == policy and close(loop["probs"], dict(zip(classes, combined)))
        assert loop["label"] == classes[int(decision.decide(combined[None])[0])]
        assert [(v["frame"], v["region"]) for v in dual["frames"]] == [(None, 1), (None, 2)]
        assert all(close(v["probs"], p) for v, p in zip(dual["frames"], alone[:2]))
        req = urllib.request.Request(f"http://127.0.0.1:{server.http}/v1/classify", data=objects["loop"].read_bytes(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=60) as answer:
            direct = json.loads(answer.read())
        assert [v["frame"] for v in direct["frames"]] == [1, 2, 3] and direct["label"] == loop["label"]
        reason = next((spool / "rejected").glob("*.txt")).read_text()
        assert "4 frames, above the cap of 3" in reason and "--max-frames" in reason

        sr_path = spool / "results" / f"{loop['result_sr']}.dcm"
        errors, _ = dciodvfy(sr_path)
        assert errors == [], errors
        refs = referenced_frames(dcmread(sr_path))
        assert sorted(f for f, region in refs if region) == [1, 2, 3]  # each frame's tissue region
        assert (None, False) in refs  # the decision: the whole loop
        page = urllib.request.urlopen(f"http://127.0.0.1:{server.http}/ui/instances/{uid_of(objects['loop'])}",
                                      timeout=30).read().decode()
        assert "frame 3, tissue region 1" in page and "combined by the instance policy median" in page
        thumbnail = urllib.request.urlopen(f"http://127.0.0.1:{server.http}/ui/instances/{uid_of(objects['loop'])}"
                                           "/thumbnail.png", timeout=30)
        assert thumbnail.headers["Content-Type"] == "image/png"
    finally:
        server.stop()


def test_a_colour_loop_with_regions_goes_from_dcmtk_through_the_node_to_orthanc(ort_engine, tmp_path):
    """`make demo`'s path: `demo-data --dicom --screen jpeg --frames 4 --views 2` (YBR_FULL_422 JPEG baseline cine
    loops, a dual view, annotations around it), sent by DCMTK's storescu proposing JPEG baseline, classified by the
    node view by view as `classify --json` reads them, each result SR forwarded to Orthanc: the PACS holds the
    node's document, which references all eight views and passes dciodvfy."""
    if not shutil.which("storescu"):
        pytest.skip("DCMTK is not installed (Debian package dcmtk)")
    from pydicom import dcmread

    data = tmp_path / "loops"
    subprocess.run([str(EXE), "demo-data", str(data), "--per-class", "1", "--size", "48", "--seed", "13", "--dicom",
                    "--screen", "jpeg", "--frames", "4", "--views", "2"], check=True, capture_output=True, timeout=300)
    files = sorted(data.rglob("*.dcm"))
    assert len(files) == 3 and all(str(dcmread(f).file_meta.TransferSyntaxUID) == "1.2.840.10008.1.2.4.50"
                                   for f in files)
    out = subprocess.run([str(EXE), "classify", str(ort_engine), *map(str, files), "--json", "-"], check=True,
                         capture_output=True, text=True, timeout=300).stdout
    want = {Path(p["path"]).name: p for p in json.loads(out)["predictions"]}
    orthanc = Orthanc(tmp_path / "orthanc")
    spool = tmp_path / "spool"
    server = Server(ort_engine, spool, "--forward", f"ORTHANC@127.0.0.1:{orthanc.dicom}")
    try:
        res = subprocess.run(["storescu", "-xy", "-aet", "SCANNER", "-aec", "DCUBE", "127.0.0.1", str(server.dicom),
                              *map(str, files)], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        deadline = time.time() + 120
        while not all(server.result(uid_of(f))["forwarded"] for f in files):
            assert time.time() < deadline, "the SRs did not reach Orthanc"
            time.sleep(0.5)
        for f in files:
            r, expected = server.result(uid_of(f)), want[f.name]
            assert r["label"] == expected["label"] and close(r["probs"], expected["probs"])
            assert [(v["frame"], v["region"], v["box"]) for v in r["frames"]] == [
                (v["frame"], v["region"], v["box"]) for v in expected["frames"]]
            assert [(v["frame"], v["region"]) for v in r["frames"]] == [(t, g) for t in range(1, 5) for g in (1, 2)]
            assert all(close(a["probs"], b["probs"]) for a, b in zip(r["frames"], expected["frames"]))
            kept = spool / "results" / f"{r['result_sr']}.dcm"
            found = orthanc.rest("/tools/find", {"Level": "Instance", "Query": {"SOPInstanceUID": r["result_sr"]}})
            assert len(found) == 1
            request = urllib.request.Request(f"http://127.0.0.1:{orthanc.http}/instances/{found[0]}/file")
            with urllib.request.urlopen(request, timeout=60) as answer:
                held = answer.read()
            assert dcmread(kept) == dcmread(io.BytesIO(held))  # the node's document (file meta aside)
            errors, _ = dciodvfy(kept)
            assert errors == [], errors
            refs = referenced_frames(dcmread(kept))
            assert sorted(f for f, region in refs if region) == [1, 1, 2, 2, 3, 3, 4, 4]
    finally:
        server.stop()
        orthanc.stop()
