"""Research tooling, not part of the installed package: the results driver (`make results`) and one-off
experiment scripts (research/experiments/README.md). Run from the repository root."""
