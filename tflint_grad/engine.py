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
from dataclasses import dataclass, field

import libcst as cst

from tflint_grad.analysis import FileContext
from tflint_grad.finding import Finding
from tflint_grad.registry import all_rules, by_code
from tflint_grad.rule import Rule
from tflint_grad.settings import Settings
from tflint_grad.sourcefile import Problem, SourceFile, diagnose, load
from tflint_grad.suppressions import file_noqa as _file_noqa
from tflint_grad.suppressions import line_noqa as _line_noqa

# A file must mention one of these to be parsed at all.
_TF_TEXT = re.compile(r"tensorflow|keras|\btf\.|tf_slim")


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


def is_tf_source(text: str) -> bool:
    return bool(_TF_TEXT.search(text))


def lint_bytes(raw: bytes, path: str, settings: Settings | None = None) -> Result:
    return lint_file(load(path, raw), settings)


def lint_source(text: str, path: str = "<string>", settings: Settings | None = None) -> list[Finding]:
    """Lint Python source text; returns findings sorted by position."""
    return lint_file(SourceFile(path, text), settings).findings


def lint_file(src: SourceFile, settings: Settings | None = None) -> Result:
    # The cyclic GC is paused while one file is linted: a parse allocates hundreds of
    # thousands of nodes that all survive, so the collector would traverse the growing
    # tree again and again for nothing (~10-25% of the time on big files). The tree and
    # the FileContext are freed by refcounting; the few cycles rules create are collected
    # after the file.
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        return _lint_file(src, settings)
    finally:
        if paused:
            gc.enable()


def _lint_file(src: SourceFile, settings: Settings | None) -> Result:
    settings = settings or Settings.default()
    enabled = settings.enabled_for(src.path)
    result = Result(src.path, source=src)
    if src.problem is not None:
        if "TFG000" in enabled:
            result.findings.append(_tfg000(src, src.problem))
        return result
    text = src.text
    if not is_tf_source(text):
        return result
    file_noqa = _file_noqa(text)
    if file_noqa is not None and not file_noqa:
        return result  # `# tflint-grad: noqa` silences the whole file
    rules = [
        r
        for r in all_rules()
        if r.code in enabled
        and not r.trace_only
        and r.code != "TFG000"
        and (not r.requires or any(tok in text for tok in r.requires))
    ]
    if not rules:
        if "TFG000" in enabled:
            _cheap_syntax_check(src, result)
        return result
    try:
        module = cst.parse_module(text)
    except cst.ParserSyntaxError as e:
        if "TFG000" in enabled:
            result.findings.append(_tfg000(src, diagnose(text, e.raw_line, e.raw_column + 1, e.message)))
        return result
    except RecursionError:
        if "TFG000" in enabled:
            result.findings.append(
                _tfg000(src, Problem(1, 1, "cannot parse: the file is too deeply nested to analyze"))
            )
        return result
    except Exception as e:
        if "TFG000" in enabled:
            result.findings.append(_tfg000(src, Problem(1, 1, f"cannot parse: {type(e).__name__}: {e}")))
        return result
    result.parsed = True
    try:
        ctx = FileContext(module, text, src.path)
    except RecursionError:
        if "TFG000" in enabled:
            result.findings.append(_tfg000(src, Problem(1, 1, "cannot analyze: the file is too deeply nested")))
        return result
    try:
        instances = [r(ctx, settings.rule_options.get(r.code)) for r in rules]
        _run_rules(ctx, instances, result)
        noqa = _line_noqa(text)
        for rule in instances:
            for rep in rule.reports:
                try:
                    finding = _to_finding(src, ctx, rule, rep)
                except Exception as e:
                    result.errors.append(
                        InternalError(src.path, rule.code, f"{type(e).__name__}: {e}", traceback.format_exc())
                    )
                    continue
                if _suppressed(finding, noqa, file_noqa, src):
                    continue
                if finding.shown_at(settings.min_confidence):
                    result.findings.append(finding)
                else:
                    result.candidates.append(finding)
    finally:
        ctx.release()  # a per-file cache that outlives the file keeps a hollow object, not the tree
    result.findings.sort(key=Finding.sort_key)
    result.candidates.sort(key=Finding.sort_key)
    return result


def _run_rules(ctx: FileContext, rules: list[Rule], result: Result) -> None:
    table: dict[type, list[tuple[Rule, object]]] = {}
    for rule in rules:
        for node_type, attr in type(rule).visitors().items():
            table.setdefault(node_type, []).append((rule, getattr(rule, attr)))
    broken: set[str] = set()
    for node in ctx.nodes:
        handlers = table.get(type(node))
        if not handlers:
            continue
        for rule, handler in handlers:
            if rule.code in broken:
                continue
            try:
                handler(node)  # type: ignore[operator]
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


def _to_finding(src: SourceFile, ctx: FileContext, rule: Rule, rep) -> Finding:
    line, col, end_line, end_col = ctx.range(rep.node)
    cell, cell_line = src.locate(line)
    end_cell_line = end_line - (line - cell_line)
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
        message=rep.message,
        severity=rep.severity or rule.severity,
        fix=rep.fix,
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


def _tfg000(src: SourceFile, problem: Problem) -> Finding:
    rule = by_code().get("TFG000")
    cell, line = src.locate(problem.line)
    return Finding(
        code="TFG000",
        name=rule.name if rule else "unanalyzable-file",
        path=src.path,
        line=max(line, 1),
        column=max(problem.column, 1),
        end_line=max(line, 1),
        end_column=max(problem.column, 1) + 1,
        message=problem.message,
        severity="error",
        cell=cell,
        data={"source_line": problem.line},
    )


def _cheap_syntax_check(src: SourceFile, result: Result) -> None:
    """No rule can match: still report a file CPython cannot parse (fast C parser)."""
    try:
        ast.parse(src.text)
    except SyntaxError as e:
        result.findings.append(_tfg000(src, diagnose(src.text, e.lineno or 1, e.offset or 1, e.msg)))
    except (ValueError, RecursionError, MemoryError) as e:
        result.findings.append(_tfg000(src, Problem(1, 1, f"cannot parse: {type(e).__name__}: {e}")))


def _suppressed(f: Finding, noqa: dict[int, set[str]], file_noqa: set[str] | None, src: SourceFile) -> bool:
    if file_noqa and f.code in file_noqa:
        return True
    first = f.data.get("source_line", f.line)
    last = first + (f.end_line - f.line)
    for line in (first, last):
        codes = noqa.get(line)
        if codes is not None and (not codes or f.code in codes):
            return True
    return False
