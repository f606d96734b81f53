"""Argument binding (analysis.calls): what a call passes for each parameter of a function."""

from __future__ import annotations

import libcst as cst
import pytest

from tflint_grad.analysis.calls import bind_arguments


def _bind(src: str, call: str, *, skip_self: bool = False):
    fn = cst.parse_module(src).body[0]
    assert isinstance(fn, cst.FunctionDef)
    expr = cst.parse_expression(call)
    assert isinstance(expr, cst.Call)
    bound = bind_arguments(fn, expr, skip_self=skip_self)

    def code(value: object) -> object:
        return cst.Module([]).code_for_node(value) if isinstance(value, cst.CSTNode) else value

    return bound, code


@pytest.mark.parametrize(
    ("call", "param", "expected"),
    [
        ("f(1, c=3)", "a", "1"),
        ("f(1, c=3)", "c", "3"),
        ("f(1)", "b", None),  # not passed: the default applies
        ("f(1)", "c", None),
        ("f(1, 2)", "b", "2"),
        ("f(1, *rest)", "a", "1"),  # before the unpacking: still known
        ("f(1, *rest)", "b", False),  # may come from `rest`
        ("f(*rest, c=3)", "c", "3"),
        ("f(*rest, c=3)", "a", False),
        ("f(1, **kw)", "c", False),
    ],
)
def test_passed_tells_argument_default_or_unknown(call: str, param: str, expected: object) -> None:
    bound, code = _bind("def f(a, b=2, *, c=None): pass", call)
    assert code(bound.passed(param)) == expected


def test_method_binding_skips_self() -> None:
    bound, code = _bind("def step(self, x, training=False): pass", "m.step(x0, training=True)", skip_self=True)
    assert code(bound.passed("x")) == "x0"
    assert code(bound.passed("training")) == "True"
    assert bound.one("training") is not None
