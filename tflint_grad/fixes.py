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


# -- notebooks --------------------------------------------------------------------------------
@dataclass
class NotebookFixResult:
    data: bytes  # the notebook file, rewritten (== the input bytes when nothing was fixed)
    applied: int
    remaining: list[Finding]
    before: dict[int, str]  # cell index -> source, for the cells that changed
    after: dict[int, str]
    source: SourceFile  # the fixed notebook, loaded
    note: str | None = None  # why fixes were left out, if some were


def fix_notebook(
    raw: bytes, path: str, settings: Settings | None = None, *, unsafe: bool = False, codes: set[str] | None = None
) -> NotebookFixResult:
    """Apply fixes to a notebook's code cells (edits are cell-local); only the edited cells'
    ``source`` values change in the file (see :mod:`tflint_grad.nbjson`)."""
    from tflint_grad.cells import to_python
    from tflint_grad.engine import lint_file
    from tflint_grad.nbjson import LayoutError, replace_sources
    from tflint_grad.sourcefile import decode, load

    bom = b"\xef\xbb\xbf" if raw.startswith(b"\xef\xbb\xbf") else b""
    text, _ = decode(raw)
    src = load(path, raw)
    findings = lint_file(src, settings).findings
    original = {span.cell: span.source for span in src.cells or ()}
    sources = dict(original)
    applied = 0
    note = None
    data = raw
    for _ in range(MAX_PASSES):
        todo = [f for f in choose(findings, unsafe, codes) if f.fix and all(e.cell in sources for e in f.fix.edits)]
        if not todo or text is None:
            break
        per_cell: dict[int, list[Edit]] = {}
        count = 0
        for f in todo:
            assert f.fix is not None
            if any(_overlap(e, x) for e in f.fix.edits for x in per_cell.get(e.cell, [])):  # type: ignore[arg-type]
                continue  # the next pass redoes it
            for e in f.fix.edits:
                per_cell.setdefault(e.cell, []).append(e)  # type: ignore[arg-type]
            count += 1
        candidate = dict(sources)
        for cell, edits in per_cell.items():
            candidate[cell] = apply_edits(sources[cell], edits)
        if candidate == sources:
            break
        if not all(parses(to_python(candidate[c]).text) for c in per_cell):
            note = "the fixed cell would not parse"
            break
        changed = {c: s for c, s in candidate.items() if s != original[c]}
        try:
            new_text = replace_sources(text, changed)
        except LayoutError as e:
            note = f"the notebook's JSON cannot be rewritten safely ({e})"
            break
        sources = candidate
        applied += count
        data = bom + new_text.encode("utf-8")
        src = load(path, data)
        findings = lint_file(src, settings).findings
    changed_cells = sorted(c for c in sources if sources[c] != original[c])
    return NotebookFixResult(
        data=data,
        applied=applied,
        remaining=findings,
        before={c: original[c] for c in changed_cells},
        after={c: sources[c] for c in changed_cells},
        source=src,
        note=note,
    )


def notebook_diff(fixed: NotebookFixResult, path: str) -> str:
    """A unified diff per edited cell, headed ``a/path:cell N`` (N as Jupyter numbers cells)."""
    out: list[str] = []
    for cell in sorted(fixed.before):
        before, after = fixed.before[cell], fixed.after[cell]
        a = before.splitlines(keepends=True)
        b = after.splitlines(keepends=True)
        for lines in (a, b):
            if lines and not lines[-1].endswith("\n"):
                lines[-1] += "\n"  # a cell's last line has no newline: keep the diff readable
        out.extend(difflib.unified_diff(a, b, f"a/{path}:cell {cell + 1}", f"b/{path}:cell {cell + 1}"))
    return "".join(out)
