"""Lints one source text: pre-filter, one libcst parse, one traversal, all rules.

``lint_source`` is the core API shared by the CLI, the flake8 plugin and the
language server. It never raises on bad input: unparseable files become TFG000
findings; a crash inside a rule is returned as an ``InternalError`` so the run
goes on and the CLI can exit 2.
"""

from __future__ import annotations

import ast
import gc
import re
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import libcst as cst

from tflint_grad import parsing, suppressions
from tflint_grad.analysis import FileContext
from tflint_grad.finding import Edit, Finding, Fix
from tflint_grad.registry import all_rules, by_code
from tflint_grad.rule import Report, Rule
from tflint_grad.settings import Settings
from tflint_grad.sourcefile import CellSpan, Problem, SourceFile, diagnose, load

# A file must mention one of these to be parsed at all.
_TF_TEXT = re.compile(r"tensorflow|keras|\btf\.|tf_slim")
_TF_BYTES = re.compile(rb"tensorflow|keras|\btf\.|tf_slim")


@dataclass
class InternalError:
    path: str
    rule: str
    message: str
    traceback: str


@dataclass
class Result:
    path: str
    findings: list[Finding] = field(default_factory=list)
    # Findings below ``settings.min_confidence``: hidden, but traced by --confirm.
    candidates: list[Finding] = field(default_factory=list)
    errors: list[InternalError] = field(default_factory=list)
    parsed: bool = False
    source: SourceFile | None = None
    # Sibling modules the program model read (path -> [mtime_ns, size]): a cached result is
    # stale when one of them changed.
    depends: dict[str, list[int]] = field(default_factory=dict)


def is_tf_source(text: str) -> bool:
    return bool(_TF_TEXT.search(text))


def lint_bytes(raw: bytes, path: str, settings: Settings | None = None) -> Result:
    return lint_file(load(path, raw), settings)


def lint_source(text: str, path: str = "<string>", settings: Settings | None = None) -> list[Finding]:
    """Lint Python source text; returns findings sorted by position."""
    return lint_file(SourceFile(path, text), settings).findings


def lint_file(
    src: SourceFile, settings: Settings | None = None, parse: Callable[[str], cst.Module] | None = None
) -> Result:
    """Lint one source file. ``parse`` stands in for ``cst.parse_module`` (it must return
    the same tree: the language server's :class:`~tflint_grad.incremental.ParseCache`)."""
    # The cyclic GC is paused while one file is linted: a parse allocates hundreds of
    # thousands of nodes that all survive, so the collector would traverse the growing
    # tree again and again for nothing (~10-25% of the time on big files). The tree and
    # the FileContext are freed by refcounting; the few cycles rules create are collected
    # after the file.
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        return _lint_file(src, settings, parse or parsing.parse_module)
    finally:
        if paused:
            gc.enable()


def _lint_file(src: SourceFile, settings: Settings | None, parse: Callable[[str], cst.Module]) -> Result:
    settings = settings or Settings.default()
    enabled = settings.enabled_for(src.path)
    result = Result(src.path, source=src)
    # A file that cannot be analyzed (undecodable, not parseable) is always reported, whatever
    # the selection, as ruff reports syntax errors; a file that never mentions TensorFlow is
    # skipped whatever its content (syntax errors and undecodable bytes alike).
    if src.problem is not None:
        if not src.raw or _TF_BYTES.search(src.raw):
            result.findings.append(_tfg000(src, src.problem))
        return result
    text = src.text
    if not is_tf_source(text):
        return result
    noqa = suppressions.parse(text)
    if noqa.whole_file:
        return result  # `# tflint-grad: noqa` (in a comment) silences the whole file
    rules = [
        r
        for r in all_rules()
        if r.code in enabled
        and not r.trace_only
        and r.code != "TFG000"
        and (not r.requires or any(tok in text for tok in r.requires))
    ]
    if not rules:
        _cheap_syntax_check(src, result)
        return result
    if src.is_notebook:
        parse = parsing.parse_module  # cells may be left out and re-parsed: no incremental parse
    module, parsed, problems = _parse(src, parse)
    result.findings.extend(_tfg000(src, p) for p in problems)  # always reported (see above)
    if module is None:
        return result
    text = parsed.text
    result.parsed = True
    try:
        ctx = FileContext(module, text, src.path, getattr(parse, "statement_positions", None))
    except RecursionError:
        result.findings.append(_tfg000(src, Problem(1, 1, "cannot analyze: the file is too deeply nested")))
        return result
    try:
        instances = [r(ctx, settings.rule_options.get(r.code)) for r in rules]
        _run_rules(ctx, instances, result)
        for rule in instances:
            for rep in rule.reports:
                try:
                    finding = _to_finding(src, ctx, rule, rep)
                except Exception as e:
                    result.errors.append(
                        InternalError(src.path, rule.code, f"{type(e).__name__}: {e}", traceback.format_exc())
                    )
                    continue
                first = finding.data.get("source_line", finding.line)
                if noqa.suppresses(finding.code, first, first + (finding.end_line - finding.line)):
                    continue
                if finding.shown_at(settings.min_confidence):
                    result.findings.append(finding)
                else:
                    result.candidates.append(finding)
    finally:
        result.depends = dict(ctx.__dict__.get("sibling_files", {}))
        ctx.release()  # a per-file cache that outlives the file keeps a hollow object, not the tree
    result.findings.sort(key=Finding.sort_key)
    result.candidates.sort(key=Finding.sort_key)
    return result


def _run_rules(ctx: FileContext, rules: list[Rule], result: Result) -> None:
    table: dict[type[cst.CSTNode], list[tuple[Rule, Callable[[cst.CSTNode], object]]]] = {}
    for rule in rules:
        for node_type, attr in type(rule).visitors().items():
            table.setdefault(node_type, []).append((rule, getattr(rule, attr)))
    broken: set[str] = set()
    # document order; the rules of today visit calls only: the per-type index, not every node
    visited = ctx.nodes if len(table) != 1 else ctx.nodes_of(next(iter(table)))
    for node in visited:
        handlers = table.get(type(node))
        if not handlers:
            continue
        for rule, handler in handlers:
            if rule.code in broken:
                continue
            try:
                handler(node)
            except RecursionError:
                broken.add(rule.code)
                result.errors.append(InternalError(ctx.path, rule.code, "RecursionError (expression too deep)", ""))
            except Exception as e:
                broken.add(rule.code)
                result.errors.append(
                    InternalError(ctx.path, rule.code, f"{type(e).__name__}: {e}", traceback.format_exc())
                )
    for rule in rules:
        if rule.code in broken:
            continue
        try:
            rule.finish()
        except Exception as e:
            result.errors.append(InternalError(ctx.path, rule.code, f"{type(e).__name__}: {e}", traceback.format_exc()))


def _to_finding(src: SourceFile, ctx: FileContext, rule: Rule, rep: Report) -> Finding:
    line, col, end_line, end_col = ctx.range(rep.node)
    message, fix = rep.message, rep.fix
    cell, cell_line, col = src.cell_position(line, col)
    end_cell_line = end_line - (line - cell_line)
    if src.is_notebook:
        if src.span(end_line) is src.span(line):
            end_col = src.cell_position(end_line, end_col)[2]
        message = cell_references(src, message, line)
        fix = _cell_fix(src, fix) if fix is not None else None
    data = dict(rep.data)
    data.setdefault("source_line", line)
    return Finding(
        code=rule.code,
        name=rule.name,
        path=src.path,
        line=cell_line,
        column=col,
        end_line=end_cell_line,
        end_column=end_col,
        message=message,
        severity=rep.severity or rule.severity,
        fix=fix,
        cell=cell,
        confidence=rep.confidence,
        data=data,
    )


def make_finding(rule: type[Rule], path: str, src: SourceFile | None, line: int, message: str) -> Finding:
    """A finding spanning line ``line`` of the parsed text (trace-only rules: no node to point at)."""
    lines = src.text.splitlines() if src is not None else []
    cell, cell_line = src.locate(line) if src is not None else (None, line)
    text_line = lines[line - 1] if 0 < line <= len(lines) else ""
    return Finding(
        code=rule.code,
        name=rule.name,
        path=path,
        line=max(cell_line, 1),
        column=1,
        end_line=max(cell_line, 1),
        end_column=max(len(text_line), 1) + 1,
        message=message,
        severity=rule.severity,
        cell=cell,
        data={"source_line": line},
    )


_LINE_REF = re.compile(r"\bline (\d+)\b")


def cell_references(src: SourceFile, text: str, line: int | None = None) -> str:
    """Rewrite ``line N`` (a line of the notebook's Python) as the line in its cell, with
    ``cell K, `` in front when it is not the cell of ``line`` (the finding's own)."""
    if not src.is_notebook or "line " not in text:
        return text
    here = src.locate(line)[0] if line is not None else None

    def repl(m: re.Match[str]) -> str:
        cell, cell_line = src.locate(int(m.group(1)))
        if cell is None:
            return m.group(0)
        return f"line {cell_line}" if cell == here else f"cell {cell + 1}, line {cell_line}"

    return _LINE_REF.sub(repl, text)


def _cell_fix(src: SourceFile, fix: Fix) -> Fix | None:
    """The fix with cell-local edits; None when an edit is not inside one cell's own code."""
    edits = []
    for e in fix.edits:
        span = src.span(e.line)
        if span is None or span.code is None:
            return None
        line = e.line - span.start + 1
        end_line, end_col = e.end_line - span.start + 1, e.end_column
        last = span.source.split("\n")
        if end_line > span.lines or (end_line == span.lines + 1 and end_col == 1):
            if end_line != len(last) + 1 or end_col != 1:
                return None
            end_line, end_col = len(last), len(last[-1]) + 1  # up to the end of a cell without a final newline
        if any(n in span.code.changed for n in range(line, end_line + 1)):
            return None  # a magic or shell line: not the user's Python
        shift, end_shift = span.code.shift(line), span.code.shift(end_line)
        content = e.content
        if shift and "\n" in content:
            prefix = last[line - 1][:shift] if line <= len(last) else ""
            if prefix.strip():
                return None
            content = content.replace("\n", "\n" + prefix)
        edits.append(Edit(line, e.column + shift, end_line, end_col + end_shift, content, cell=span.cell))
    return Fix(fix.message, tuple(edits), fix.applicability)


def _parse(
    src: SourceFile, parse: Callable[[str], cst.Module] = parsing.parse_module
) -> tuple[cst.Module | None, SourceFile, list[Problem]]:
    """One libcst parse. In a notebook a cell that does not parse gets its own problem and
    is left out (blank lines: the other cells keep their lines); the rest is analysed."""
    current = src
    problems: dict[int, Problem] = {}
    first = True
    for _ in range(8):
        try:
            return parse(current.text), current, list(problems.values())
        except cst.ParserSyntaxError as e:
            span = src.span(e.raw_line) if src.is_notebook else None
            if span is None:
                problem = diagnose(current.text, e.raw_line, e.raw_column + 1, e.message)
                return None, current, [*problems.values(), problem]
            if first:  # CPython names every bad cell (libcst may point at the next cell's first token)
                first = False
                problems.update(_bad_cells(src))
                if problems:
                    current = src.without_cells(set(problems))
                    continue
            if span.cell not in problems:
                problems[span.cell] = _cell_problem(span, e.raw_line - span.start + 1, e.raw_column + 1, e.message)
            current = src.without_cells(set(problems))
        except RecursionError:
            return (
                None,
                current,
                [*problems.values(), Problem(1, 1, "cannot parse: the file is too deeply nested to analyze")],
            )
        except Exception as e:
            return None, current, [*problems.values(), Problem(1, 1, f"cannot parse: {type(e).__name__}: {e}")]
    return None, current, list(problems.values())


def _bad_cells(src: SourceFile) -> dict[int, Problem]:
    """The cells CPython cannot parse, each with its problem (lines of the notebook's Python)."""
    out: dict[int, Problem] = {}
    for span in src.cells or ():
        text = span.code.text if span.code is not None else ""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ast.parse(text)
        except SyntaxError as e:
            out[span.cell] = _cell_problem(span, e.lineno or 1, e.offset or 1, e.msg)
        except (ValueError, RecursionError, MemoryError) as e:
            out[span.cell] = Problem(span.start, 1, f"cannot parse: {type(e).__name__}: {e}")
    return out


def _cell_problem(span: CellSpan, line: int, column: int, message: str) -> Problem:
    text = span.code.text if span.code is not None else ""
    p = diagnose(text, line, column, message)
    return Problem(span.start + p.line - 1, p.column, p.message)


def _tfg000(src: SourceFile, problem: Problem) -> Finding:
    rule = by_code().get("TFG000")
    cell, line, column = src.cell_position(problem.line, problem.column)
    return Finding(
        code="TFG000",
        name=rule.name if rule else "unanalyzable-file",
        path=src.path,
        line=max(line, 1),
        column=max(column, 1),
        end_line=max(line, 1),
        end_column=max(column, 1) + 1,
        message=problem.message,
        severity="error",
        cell=cell,
        data={"source_line": problem.line},
    )


def _cheap_syntax_check(src: SourceFile, result: Result) -> None:
    """No rule can match: still report a file CPython cannot parse (fast C parser)."""
    if src.is_notebook:
        result.findings.extend(_tfg000(src, p) for p in _bad_cells(src).values())
        return
    try:
        ast.parse(src.text)
    except SyntaxError as e:
        result.findings.append(_tfg000(src, diagnose(src.text, e.lineno or 1, e.offset or 1, e.msg)))
    except (ValueError, RecursionError, MemoryError) as e:
        result.findings.append(_tfg000(src, Problem(1, 1, f"cannot parse: {type(e).__name__}: {e}")))
