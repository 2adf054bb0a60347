"""The export's orchestration (export/build.py): parity's images loaded and the PyTorch reference run once, shared
by every measurement and the operating point; the record composed from what the steps returned and manifest.json
written once, at publish."""
from __future__ import annotations

from situations import CountedReference, context

from dcube_edge import runtimes
from dcube_edge.data import discover
from dcube_edge.export.build import ExportOptions, export


def test_one_reference_run_one_manifest_write_and_the_operating_point_on_the_parity_images(tiny_run, demo_data,
                                                                                           tmp_path):
    reference, seen = CountedReference(), []

    def log(line: str) -> None:  # every step logs: is a manifest in the work folder before publish?
        seen.extend(tmp_path.glob(".e.*.partial/manifest.json"))

    record = export(tiny_run, tmp_path / "e", ExportOptions(max_batch=16, operating_point="argmax"),
                    context=context(reference=reference, log=log))
    assert reference.runs == [24]
    assert seen == []
    assert runtimes.read(tmp_path / "e").record == record  # what was returned is what was written, and verifies
    val = discover(demo_data).val
    assert record.decision.images_sha256 == val.images_sha256(record.classes)
    assert record.decision.n == record.parity.n == 24


def test_an_operating_split_of_its_own_runs_the_engine_again_not_the_reference(tiny_run, demo_data, tmp_path):
    reference = CountedReference()
    record = export(tiny_run, tmp_path / "e", ExportOptions(max_batch=16, operating_split=str(demo_data / "train"),
                                                             operating_point="argmax"),
                    context=context(reference=reference))
    assert reference.runs == [24]  # the validation images only
    train = discover(demo_data).train
    assert record.decision.n == len(train) == 72
    assert record.decision.chosen_on.startswith(str(demo_data / "train"))
