"""The one timer (runtimes/timing.py): rounds with a rotating order, self-measured figures, per-round ratios."""


def test_timing_rounds_rotate_the_order_and_take_self_measured_figures():
    """The one timer (bench rows, export checks, the vendor-tool comparison): each round calls every
    configuration once, the order rotating; a configuration that returns a float measured itself."""
    from dcube_edge.runtimes.timing import relative, rounds

    calls = []

    def side(name, value):
        def measure():
            calls.append(name)
            return value
        return measure

    got = rounds({"ours": side("ours", 1.0), "theirs": side("theirs", 2.0)}, 4)
    assert got == {"ours": [1.0] * 4, "theirs": [2.0] * 4}
    assert calls == ["ours", "theirs", "theirs", "ours", "ours", "theirs", "theirs", "ours"]
    calls.clear()
    three = rounds({"a": side("a", 1.0), "b": side("b", 3.0), "c": side("c", 2.0)}, 3, warmup=1)
    assert calls == ["a", "b", "c", "a", "b", "c", "b", "c", "a", "c", "a", "b"]
    # per-round ratios cancel a drift that slows every configuration of a round alike
    assert relative({"a": [1.0, 2.0, 4.0], "b": [1.5, 3.0, 6.0]}) == {"a": 2.0, "b": 3.0}
    assert relative(three)["b"] == 3.0
