"""The simulation test of the node's monitor (docs/monitoring.md, "Measured"): streams drawn from the engine's own
results on fresh phantoms of its training distribution, on the same phantoms with their intensity shifted, and
with a new manufacturer's scanner joining the site (research/experiments/monitor_alarms.py draws them). The
in-distribution stream raises no alert over LENGTH instances; each change raises its alert within WITHIN."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("scipy", reason="the monitor needs the `serve` extra (scipy)")

from dcube_edge import runtimes  # noqa: E402
from dcube_edge.phantoms import write_demo  # noqa: E402
from dcube_edge.runtimes.serve.monitor.replay import first_alarms  # noqa: E402
from research.experiments.monitor_alarms import pool, shifted, stream  # noqa: E402

LENGTH = 2000  # instances of the in-distribution stream
CHANGE = 500  # where the shift or the new manufacturer starts
WITHIN = 250  # instances after the change by which its alert must have started
OFFSET = 0.1  # the intensity shift: a tenth of full scale added to every pixel


@pytest.fixture(scope="module")
def pools(ort_engine, tmp_path_factory):
    root = tmp_path_factory.mktemp("fresh")
    write_demo(root, per_class=60, size=32, seed=7)  # another seed of the generator the engine was trained on
    paths = sorted(str(p) for p in root.rglob("*.png"))
    return pool(ort_engine, paths), pool(ort_engine, shifted(paths, root / "shifted", OFFSET))


def test_the_engines_own_distribution_raises_no_alert(ort_engine, pools):
    reference = runtimes.read(ort_engine).record.reference
    first = first_alarms(stream(pools[0], np.random.default_rng(1), LENGTH), reference)
    assert first == dict.fromkeys(first), first


def test_a_shifted_intensity_raises_an_alert_after_the_change_and_within_the_bound(ort_engine, pools):
    reference = runtimes.read(ort_engine).record.reference
    own, moved = pools
    first = first_alarms(stream(own, np.random.default_rng(2), CHANGE + WITHIN, moved, CHANGE), reference)
    raised = {k: v for k, v in first.items() if v is not None}
    assert raised and all(v > CHANGE for v in raised.values()), first
    assert "input-statistics" in raised and "metadata-mix" not in raised


def test_a_new_manufacturer_raises_the_metadata_alert_within_the_bound(ort_engine, pools):
    reference = runtimes.read(ort_engine).record.reference
    first = first_alarms(stream(pools[0], np.random.default_rng(3), CHANGE + WITHIN, new_from=CHANGE), reference)
    assert first["metadata-mix"] is not None and CHANGE < first["metadata-mix"] <= CHANGE + WITHIN, first
    assert [k for k, v in first.items() if v is not None] == ["metadata-mix"]
