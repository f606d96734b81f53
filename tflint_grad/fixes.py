"""Applying fixes: non-overlapping edits, re-lint, repeat (bounded), never break code.

A fixed text is accepted only if it still parses; applying fixes to already fixed
code changes nothing (idempotence is tested).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import libcst as cst

from tflint_grad.finding import Edit, Finding
from tflint_grad.settings import Settings
from tflint_grad.sourcefile import SourceFile

MAX_PASSES = 6


@dataclass
class FixResult:
    text: str
    applied: int  # number of fixes applied
    remaining: list[Finding]  # findings left after the last pass


def _offsets(text: str) -> list[int]:
    starts = [0]
    for i, ch in enumerate(text):
        if ch == "\n":
            starts.append(i + 1)
    return starts


def apply_edits(text: str, edits: list[Edit]) -> str:
    starts = _offsets(text)

    def off(line: int, col: int) -> int:
        if line - 1 >= len(starts):
            return len(text)
        return min(starts[line - 1] + col - 1, len(text))

    spans = sorted(((off(e.line, e.column), off(e.end_line, e.end_column), e.content) for e in edits), reverse=True)
    out = text
    last_start = len(text) + 1
    for start, end, content in spans:
        if end > last_start:  # overlapping: keep the later one, the next pass redoes this
            continue
        out = out[:start] + content + out[end:]
        last_start = start
    return out


def choose(findings: list[Finding], unsafe: bool, codes: set[str] | None = None) -> list[Finding]:
    return [
        f
        for f in findings
        if f.fix is not None and (unsafe or f.fix.applicability == "safe") and (codes is None or f.code in codes)
    ]


def fix_text(
    text: str,
    path: str,
    settings: Settings | None = None,
    *,
    unsafe: bool = False,
    codes: set[str] | None = None,
    findings: list[Finding] | None = None,
) -> FixResult:
    """Apply fixes until none is left (at most ``MAX_PASSES`` re-lints).

    ``findings``: the findings of ``text`` when the caller has just linted it (the CLI, the
    language server): the fix loop then lints only the texts it produced, and each re-lint
    is also the parse check of the fixed text. ``applied`` counts findings, not edits: the
    fixable findings of ``text`` minus those left (a fix that cascades into a second one
    still counts once).
    """
    from tflint_grad.engine import lint_file

    current = text
    if findings is None:
        findings = lint_file(SourceFile(path, current), settings).findings
    before = len(choose(findings, unsafe, codes))
    for _ in range(MAX_PASSES):
        todo = choose(findings, unsafe, codes)
        if not todo:
            break
        # one fix per finding; edits of overlapping fixes are deferred to the next pass
        edits: list[Edit] = []
        for f in todo:
            assert f.fix is not None
            if any(_overlap(e, x) for e in f.fix.edits for x in edits):
                continue
            edits.extend(f.fix.edits)
        candidate = apply_edits(current, edits)
        if candidate == current:
            break
        result = lint_file(SourceFile(path, candidate), settings)
        if not result.parsed and not parses(candidate):  # a fix must never break the code
            break
        current = candidate
        findings = result.findings
    applied = max(0, before - len(choose(findings, unsafe, codes))) if current != text else 0
    return FixResult(current, applied, findings)


def _overlap(a: Edit, b: Edit) -> bool:
    return not ((a.end_line, a.end_column) <= (b.line, b.column) or (b.end_line, b.end_column) <= (a.line, a.column))


def parses(text: str) -> bool:
    try:
        cst.parse_module(text)
        return True
    except Exception:
        return False


def compiles(text: str) -> bool:
    """CPython's own (fast) parser accepts ``text``: the last guard before a fixed file is written."""
    import ast
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(text)
        return True
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False


def unified_diff(before: str, after: str, path: str) -> str:
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True), after.splitlines(keepends=True), f"a/{path}", f"b/{path}"
        )
    )
