"""The monitor's statistics and its part of the ledger (runtimes/serve/monitor), on streams built here: a window
like the reference passes, one that differs alarms, and the alerts and observations survive in the ledger."""
from __future__ import annotations

import numpy as np

from dcube_edge.runtimes.observed import FEATURES
from dcube_edge.runtimes.sections import Reference
from dcube_edge.runtimes.serve.ledger import Ledger
from dcube_edge.runtimes.serve.monitor import store, watch
from dcube_edge.runtimes.serve.monitor.checks import homogeneity, ks
from dcube_edge.runtimes.serve.monitor.observation import Observation
from dcube_edge.runtimes.serve.monitor.replay import first_alarms

RNG = np.random.default_rng(0)


def reference(n: int = 300) -> Reference:
    p = np.sort(RNG.beta(2, 5, n))
    inputs = {f: tuple(np.sort(RNG.normal(0.5, 0.1, n))) for f in FEATURES}
    return Reference(chosen_on="made here", n=n, instances=n, scores={"a": tuple(1 - p[::-1]), "b": tuple(p)},
                     decision_rates={"a": 0.8, "b": 0.2}, inputs=inputs)


def drawn(n: int, shift: float = 0.0, rate_b: float = 0.2, maker=lambda i: "Acme") -> list[Observation]:
    out = []
    for i in range(n):
        p = float(RNG.beta(2, 5))
        label = "b" if RNG.random() < rate_b else "a"
        view = tuple(float(RNG.normal(0.5 + shift, 0.1)) for _ in FEATURES)
        out.append(Observation(label, {"a": 1 - p, "b": p}, (view,), 1.0, {"Manufacturer": maker(i)}))
    return out


def test_a_window_like_the_reference_passes_and_a_moved_one_alarms():
    ref = reference()
    same = watch.evaluate(drawn(250), ref, drawn(200), "w")
    assert [f.name for f in same] == list(watch.CHECKS)
    assert not any(f.alarming for f in same), same
    moved = {f.name: f for f in watch.evaluate(drawn(250, shift=0.08), ref, drawn(200), "w")}
    assert moved["input-statistics"].alarming and "median +0." in moved["input-statistics"].detail
    assert not moved["decision-rate"].alarming
    calls = {f.name: f for f in watch.evaluate(drawn(250, rate_b=0.5), ref, [], "w")}
    assert calls["decision-rate"].alarming and not calls["metadata-mix"].alarming  # no baseline yet: not compared


def test_a_new_manufacturer_is_a_new_category_against_the_baseline():
    base = drawn(200, maker=lambda i: "Acme" if i % 3 else "Globex")
    window = drawn(250, maker=lambda i: "Initech" if i % 4 == 0 else ("Acme" if i % 3 else "Globex"))
    t = homogeneity([o.meta["Manufacturer"] for o in window], {"Acme": 133, "Globex": 67})
    assert t.p < 1e-10 and "'Initech' 25% of the window vs 0%" in t.detail
    f = {f.name: f for f in watch.evaluate(window, None, base, "w")}
    assert list(f) == ["metadata-mix"] and f["metadata-mix"].alarming  # without a reference, the site is still watched


def test_ks_and_homogeneity_give_nothing_to_compare_on_empty_samples():
    assert ks([], [1.0, 2.0]).p == 1.0
    assert homogeneity(["x"] * 10, {"x": 5}).p == 1.0


def test_replay_finds_the_change_after_it_happens_not_before():
    ref = reference()
    stream = drawn(1000) + drawn(500, shift=0.1)
    first = first_alarms(stream, ref, step=25)
    assert first["input-statistics"] is not None and 1000 < first["input-statistics"] <= 1150  # a 1-SD shift, half the window
    assert first["decision-rate"] is None


def test_observations_alerts_and_the_reference_are_kept_in_the_ledger(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    for i in range(3):
        ledger.add(f"1.2.{i}", tmp_path / f"{i}.dcm", "SCANNER")
        row = ledger.pending(1)[0]
        ledger.finish([(row, {"label": "a", "probs": {"a": 0.9, "b": 0.1}})], "E", 100.0 + i)
    seen = drawn(3)
    store.record(ledger, [(f"1.2.{i}", o) for i, o in enumerate(seen)])
    assert [o for _, o in store.observations(ledger, "E")] == seen
    assert [o for _, o in store.observations(ledger, "E", newest=2)] == seen[1:]
    assert [o for _, o in store.observations(ledger, "E", oldest=1)] == seen[:1]
    assert store.observations(ledger, "another engine") == []
    ref = reference(20)
    store.keep_reference(ledger, ref)
    assert store.reference_of(ledger) == ref
    store.prepare(ledger)
    store.started(ledger, store.Alert("decision-rate", "last 250", 5.0, None, 1e-7, 1e-5, "call", "E"))
    assert [a.name for a in store.alerts(ledger, active_only=True)] == ["decision-rate"]
    store.ended(ledger, "decision-rate", 9.0)
    assert store.alerts(ledger, active_only=True) == [] and store.alerts(ledger)[0].ended == 9.0


def test_colour_files_where_the_reference_had_none_move_the_input_statistics():
    ref = reference()
    grey = drawn(250)
    colour = [Observation(o.label, o.scores, o.inputs, o.ood, o.meta, {"colour": i % 2 == 0}) for i, o in
              enumerate(grey)]
    before = {f.name: f for f in watch.evaluate(grey, ref, [], "w")}["input-statistics"]
    after = {f.name: f for f in watch.evaluate(colour, ref, [], "w")}["input-statistics"]
    assert not before.alarming and after.alarming and "'yes' 50% of the window vs 0%" in after.detail
