"""Small helpers for the analysis-layer tests: parse a source, find a node by its code."""

from __future__ import annotations

from typing import TypeVar

import libcst as cst

from tflint_grad.analysis import FileContext
from tflint_grad.rule import dedent

N = TypeVar("N", bound=cst.CSTNode)


def context(source: str) -> FileContext:
    text = dedent(source)
    return FileContext(cst.parse_module(text), text, "example.py")


def find(ctx: FileContext, code: str, kind: type[N], *, line: int | None = None, nth: int = -1) -> N:
    """The ``nth`` node (default: the last) of type ``kind`` whose code is ``code`` (on ``line``)."""
    hits = [n for n in ctx.nodes if type(n) is kind and ctx.code(n) == code and (line is None or ctx.line(n) == line)]
    assert hits, f"no {kind.__name__} `{code}`" + (f" on line {line}" if line else "")
    node = hits[nth]
    assert isinstance(node, kind)
    return node


def name(ctx: FileContext, ident: str, *, line: int | None = None, nth: int = -1) -> cst.Name:
    return find(ctx, ident, cst.Name, line=line, nth=nth)


def call(ctx: FileContext, code: str, *, nth: int = -1) -> cst.Call:
    return find(ctx, code, cst.Call, nth=nth)
