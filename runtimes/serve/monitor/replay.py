"""The monitor run over a recorded or simulated stream, as the node runs it after each batch: every ``step``
instances the last ``window`` are compared (:func:`.watch.evaluate`), the metadata against the first ``baseline``.
What the simulation test and research/experiments/monitor_alarms.py measure false alarms and detection delays
with."""
from __future__ import annotations

from collections.abc import Sequence

from ...sections import Reference
from . import watch
from .observation import Observation


def first_alarms(stream: Sequence[Observation], reference: Reference | None, window: int = 250, baseline: int = 200,
                 step: int = 25) -> dict[str, int | None]:
    """For each check, the number of instances seen when it first alarmed (None: never over the stream)."""
    first: dict[str, int | None] = dict.fromkeys(watch.CHECKS)
    for i in range(step, len(stream) + 1, step):
        base = stream[:baseline] if i > baseline else []
        after = stream[max(baseline, i - window):i] if base else []
        for f in watch.evaluate(stream[max(0, i - window):i], reference, base, "replay", after):
            if f.alarming and first.get(f.name) is None:
                first[f.name] = i
    return first
