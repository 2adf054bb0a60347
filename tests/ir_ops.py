"""Counting ops in an OpenVINO IR, for the tests that check what an export left in it."""
from __future__ import annotations


def ops_of(ir, op_type: str) -> int:
    """How many ops of ``op_type`` an OpenVINO model holds."""
    return sum(op.get_type_name() == op_type for op in ir.get_ordered_ops())


def fake_quantized_in(ir, scope: str) -> int:
    """FakeQuantize nodes whose output feeds an op of the IR under ``scope`` (a module name at export)."""
    return sum(1 for op in ir.get_ordered_ops() if op.get_type_name() == "FakeQuantize"
               and any(t.get_node().get_friendly_name().startswith(scope + ".") for t in op.output(0).get_target_inputs()))
