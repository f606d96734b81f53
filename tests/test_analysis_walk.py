"""The collector's walk (tflint_grad/analysis/context.py) leaves trivia out of the program
model: whitespace, comments, punctuation and operator tokens, which rules read as fields
(``type(binop.operator)``), never as nodes."""

from __future__ import annotations

import libcst as cst

from tflint_grad.analysis import FileContext
from tflint_grad.analysis.context import _TRIVIA


def test_every_operator_token_is_trivia():
    bases = (cst.BaseBinaryOp, cst.BaseBooleanOp, cst.BaseCompOp, cst.BaseUnaryOp, cst.BaseAugOp)
    operators = {
        t
        for t in vars(cst).values()
        if isinstance(t, type) and issubclass(t, bases) and not t.__name__.startswith("Base")
    }
    assert operators and operators <= _TRIVIA


def test_the_walk_records_expressions_not_tokens():
    text = "import tensorflow as tf\ny = (tf.nn.relu(x, name='a') + 1) * 2  # c\nz = [y, -y] if y >= 0 else {}\n"
    ctx = FileContext(cst.parse_module(text), text, "t.py")
    recorded = {type(n).__name__ for n in ctx.nodes}
    assert {"Call", "Attribute", "Name", "Arg", "BinaryOperation", "UnaryOperation", "IfExp", "List"} <= recorded
    assert not recorded & {t.__name__ for t in _TRIVIA}
    binop = next(n for n in ctx.nodes if isinstance(n, cst.BinaryOperation) and isinstance(n.operator, cst.Multiply))
    call = next(n for n in ctx.nodes if isinstance(n, cst.Call))
    assert ctx.contains(binop, call) and ctx.parent(call.args[0]) is call
