"""The site's figures once labels arrive (runtimes/serve/monitor/performance.py and labels.py): intervals at the
operating point, the comparison with the card's counts, the label-free estimate, and labels imported by SOP
Instance UID or Accession Number."""
from __future__ import annotations

import pytest

from dcube_edge.errors import UserError
from dcube_edge.runtimes.sections import Reference
from dcube_edge.runtimes.serve.ledger import Ledger
from dcube_edge.runtimes.serve.monitor import labels, performance
from dcube_edge.runtimes.serve.records import Listing

# the card: on 100 positives and 100 negatives, sensitivity 0.85 and specificity 0.90
CARD = Reference(instances=200, decision_rates={"pos": 0.475, "neg": 0.525},
                 confusion={"pos": (85, 15, 10, 90), "neg": (90, 10, 15, 85)})


def labelled(sens: float, spec: float, n: int = 200) -> list[tuple[str, str, dict]]:
    """n/2 positives of which a share ``sens`` called positive, n/2 negatives of which ``spec`` called negative."""
    out = []
    for i in range(n):
        truth = "pos" if i % 2 else "neg"
        right = i // 2 < round((sens if truth == "pos" else spec) * n / 2)
        call = truth if right else ("neg" if truth == "pos" else "pos")
        p = 0.8 if call == "pos" else 0.2
        out.append((truth, call, {"pos": p, "neg": 1 - p}))
    return out


def test_figures_like_the_cards_do_not_alarm_and_worse_ones_do():
    like = {c.name: c for c in performance.evaluate(labelled(0.85, 0.90), CARD)}
    assert not any(c.alarming for c in like.values())
    pos = like["pos"].site["sensitivity"]
    assert pos.low < 0.85 < pos.high and pos.n == 100
    assert like["pos"].card["sensitivity"].value == 0.85
    worse = {c.name: c for c in performance.evaluate(labelled(0.55, 0.90), CARD)}
    assert worse["pos"].alarming and worse["pos"].site["sensitivity"].high < 0.85


def test_the_label_free_estimate_is_what_calibrated_probabilities_promise():
    calls = ["pos"] * 50 + ["neg"] * 50
    probs = [{"pos": 0.8, "neg": 0.2}] * 50 + [{"pos": 0.1, "neg": 0.9}] * 50
    est = performance.estimate(calls, probs, "pos")
    assert est["ppv"].value == pytest.approx(0.8) and est["npv"].value == pytest.approx(0.9)
    assert est["sensitivity"].value == pytest.approx(40 / 45, abs=1e-4)


def test_labels_by_uid_or_accession_and_what_matched_nothing(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    for i, accession in enumerate(("A1", "A1", "A2")):
        ledger.add(f"1.2.{i}", tmp_path / f"{i}.dcm", "SCANNER", listing=Listing(accession=accession))
        row = ledger.pending(1)[0]
        ledger.finish([(row, {"label": "pos", "probs": {"pos": 0.7, "neg": 0.3}})], "E", 10.0 + i)
    rows = labels.read_csv("accession_number,label\nA1,neg\nA9,pos\n") + \
        labels.read_csv("sop_instance_uid,label\n1.2.2,pos\n1.2.0,maybe\n")
    done = labels.add(ledger, rows, ["pos", "neg"], "test")
    assert (done.labelled, done.unmatched, done.unknown_class) == (3, ["A9"], ["1.2.0: 'maybe'"])
    assert [t for t, _, _ in labels.joined(ledger, "E")] == ["neg", "neg", "pos"]
    with pytest.raises(UserError, match="needs a header with a `label` column"):
        labels.read_csv("uid,class\n1,pos\n")
