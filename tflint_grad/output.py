"""Output formats: text, json, sarif, github (and the ``--statistics`` table).

* **text**: ``path:line:col: CODE [*] message`` (1-based; ``[*]``: fixable with ``--fix``,
  or with ``--fix --unsafe-fixes`` when ``--unsafe-fixes`` is given). Notebook findings
  read ``path:cell N:line:col: ...`` where N is the 1-based cell number Jupyter shows
  (the JSON ``cell`` field is the 0-based index). After ``--confirm`` each finding gets
  an indented ``    = <verdict>: <evidence>`` line.
* **json** (public contract): ``{"version", "findings": [Finding.to_dict()], "files_checked"}``.
* **sarif**: SARIF 2.1.0 for GitHub code scanning; one run, every rule in
  ``tool.driver.rules``, repo-relative URIs under ``%SRCROOT%``. A notebook result's
  region is inside its code cell (``region.properties.cell``: the 0-based cell index,
  also in ``result.properties.cell`` and as ``cell N, line L`` in the message); notebook
  results carry no SARIF ``fixes`` (their lines are not lines of the .ipynb file).
* **github**: workflow commands (``::error title=...,file=...::...``).

Text a traced script wrote (an exception's message, its output) appears in a verdict's evidence
only between ``«`` and ``»``, cut short (``tflint_grad.scripttext``). Text and JSON show it;
SARIF and GitHub annotations, published on pull requests, replace it with
``«script text omitted»`` unless ``script_text=True`` (``--verbose``).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tflint_grad import __version__
from tflint_grad.finding import DOCS_URL, Finding
from tflint_grad.scripttext import clean, redact

if TYPE_CHECKING:
    from tflint_grad.rule import Rule

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "https://github.com/tflint-grad/tflint-grad"
TOOL = "tflint-grad"

SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
GITHUB_LEVEL = {"error": "error", "warning": "warning", "info": "notice"}
PROBLEM_SEVERITY = {"error": "error", "warning": "warning", "info": "recommendation"}
CATEGORY = {
    "TFG0": "analysis",
    "TFG1": "gradients",
    "TFG2": "batch-normalization",
    "TFG3": "initialization",
    "TFG4": "nan-inf",
    "TFG5": "optimizer",
}


def is_fixable(f: Finding, unsafe: bool = False) -> bool:
    """``--fix`` (``--fix --unsafe-fixes`` when ``unsafe``) would fix it."""
    return f.fix is not None and (unsafe or f.fix.applicability == "safe")


def location(f: Finding) -> str:
    if f.cell is not None:
        return f"{f.path}:cell {f.cell + 1}:{f.line}:{f.column}"
    return f"{f.path}:{f.line}:{f.column}"


# -- text ---------------------------------------------------------------------------------
def format_text(
    findings: Sequence[Finding], *, traced: bool = False, show_fixes: bool = False, unsafe: bool = False
) -> str:
    lines: list[str] = []
    for f in findings:
        marker = "[*] " if is_fixable(f, unsafe) else ""
        lines.append(f"{location(f)}: {f.code} {marker}{f.message}")
        if traced:
            verdict = f.verdict
            lines.append(f"    = {verdict}: {f.evidence}" if f.evidence else f"    = {verdict}")
        if show_fixes and f.fix is not None:
            lines.append(f"    help: {f.fix.message} ({f.fix.applicability} fix)")
    return "".join(line + "\n" for line in lines)


# -- json ---------------------------------------------------------------------------------
def to_json(findings: Sequence[Finding], files_checked: int) -> dict[str, Any]:
    return {"version": __version__, "findings": [f.to_dict() for f in findings], "files_checked": files_checked}


def format_json(findings: Sequence[Finding], files_checked: int) -> str:
    return json.dumps(to_json(findings, files_checked), indent=2, ensure_ascii=False) + "\n"


# -- github -------------------------------------------------------------------------------
def _escape_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(s: str) -> str:
    return _escape_data(s).replace(":", "%3A").replace(",", "%2C")


EVIDENCE_LIMIT = 600  # characters of evidence in an annotation or a SARIF result


def published_evidence(evidence: str | None, script_text: bool = False) -> str | None:
    """Evidence for SARIF and GitHub annotations: one line, bounded, and without the traced
    script's own words unless ``script_text``."""
    if not evidence:
        return evidence
    return clean(evidence if script_text else redact(evidence), EVIDENCE_LIMIT, keep_quotes=True)


def format_github(findings: Sequence[Finding], *, script_text: bool = False) -> str:
    out = []
    for f in findings:
        level = GITHUB_LEVEL.get(f.severity, "warning")
        props = [f"title={_escape_property(f'{TOOL} ({f.code})')}", f"file={_escape_property(f.path)}"]
        if f.cell is None:  # a notebook's cell lines are not lines of the .ipynb file
            props += [f"line={f.line}", f"col={f.column}", f"endLine={f.end_line}", f"endColumn={f.end_column}"]
        message = f"{location(f)}: {f.code} {f.message}"
        if f.verdict != "unconfirmed":
            evidence = published_evidence(f.evidence, script_text)
            message += f" [{f.verdict}" + (f": {evidence}]" if evidence else "]")
        out.append(f"::{level} {','.join(props)}::{_escape_data(message)}")
    return "".join(line + "\n" for line in out)


# -- sarif --------------------------------------------------------------------------------
def repo_root(start: str | None = None) -> str:
    """The folder SARIF URIs are relative to: the git repository root, else the cwd."""
    here = os.path.abspath(start or os.getcwd())
    for folder in (here, *map(str, Path(here).parents)):
        if os.path.exists(os.path.join(folder, ".git")):
            return folder
    return here


def _artifact(path: str, root: str) -> dict[str, Any]:
    absolute = os.path.abspath(path)
    rel = os.path.relpath(absolute, root)
    if rel.startswith(os.pardir) or os.path.isabs(rel):
        return {"uri": Path(absolute).as_uri()}
    return {"uri": rel.replace(os.sep, "/"), "uriBaseId": "%SRCROOT%"}


def _sarif_rule(rule) -> dict[str, Any]:
    from tflint_grad.docs import render_rule

    docs = rule.docs()
    tags = [CATEGORY.get(rule.code[:4], "tflint-grad"), "tensorflow"]
    if getattr(rule, "trace_only", False):
        tags.append("trace-only")
    return {
        "id": rule.code,
        "name": rule.name,
        "shortDescription": {"text": rule.summary() or rule.name},
        "fullDescription": {"text": docs or rule.name},
        "help": {"text": docs or rule.name, "markdown": render_rule(rule)},
        "helpUri": DOCS_URL.format(code=rule.code),
        "defaultConfiguration": {"level": SARIF_LEVEL.get(rule.severity, "warning")},
        "properties": {"tags": tags, "problem.severity": PROBLEM_SEVERITY.get(rule.severity, "warning")},
    }


def _region(line: int, col: int, end_line: int, end_col: int) -> dict[str, int]:
    line = max(line, 1)
    end_line = max(end_line, line)
    col = max(col, 1)
    end_col = max(end_col, 1)
    if end_line == line and end_col < col:
        end_col = col
    return {"startLine": line, "startColumn": col, "endLine": end_line, "endColumn": end_col}


SARIF_RANK = {"high": 90.0, "low": 30.0}


def to_sarif(
    findings: Sequence[Finding],
    *,
    rules: Iterable[type[Rule]] | None = None,
    root: str | None = None,
    successful: bool = True,
    notifications: Sequence[str] = (),
    script_text: bool = False,
) -> dict[str, Any]:
    if rules is None:
        from tflint_grad.registry import all_rules

        rules = all_rules()
    rules = list(rules)
    root = root or repo_root()
    index = {r.code: i for i, r in enumerate(rules)}
    driver_rules = [_sarif_rule(r) for r in rules]
    results = []
    for f in findings:
        artifact = _artifact(f.path, root)
        physical: dict[str, Any] = {"artifactLocation": artifact}
        text = f.message
        physical["region"] = _region(f.line, f.column, f.end_line, f.end_column)
        if f.cell is not None:  # the region is inside the code cell, not in the .ipynb's JSON lines
            physical["region"]["properties"] = {"cell": f.cell}
            text = f"cell {f.cell + 1}, line {f.line}, column {f.column}: {f.message}"
        result: dict[str, Any] = {
            "ruleId": f.code,
            "level": SARIF_LEVEL.get(f.severity, "warning"),
            "message": {"text": text},
            "locations": [{"physicalLocation": physical}],
            "properties": {
                "verdict": f.verdict,
                "evidence": published_evidence(f.evidence, script_text),
                "confidence": f.confidence,
            },
            # SARIF rank (0-100, higher = more relevant): the premise shown in the code, or assumed
            "rank": SARIF_RANK[f.confidence],
        }
        if f.code in index:
            result["ruleIndex"] = index[f.code]
        if f.cell is not None:
            result["properties"]["cell"] = f.cell
        if f.fix is not None and f.cell is None:
            result["fixes"] = [
                {
                    "description": {"text": f"{f.fix.message} ({f.fix.applicability})"},
                    "artifactChanges": [
                        {
                            "artifactLocation": artifact,
                            "replacements": [
                                {
                                    "deletedRegion": _region(e.line, e.column, e.end_line, e.end_column),
                                    "insertedContent": {"text": e.content},
                                }
                                for e in f.fix.edits
                            ],
                        }
                    ],
                }
            ]
        results.append(result)
    invocation: dict[str, Any] = {"executionSuccessful": successful}
    if notifications:
        invocation["toolExecutionNotifications"] = [{"level": "error", "message": {"text": n}} for n in notifications]
    run = {
        "tool": {
            "driver": {
                "name": TOOL,
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": INFORMATION_URI,
                "rules": driver_rules,
            }
        },
        "originalUriBaseIds": {"%SRCROOT%": {"uri": Path(root).as_uri().rstrip("/") + "/"}},
        "columnKind": "unicodeCodePoints",
        "invocations": [invocation],
        "results": results,
    }
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def format_sarif(findings: Sequence[Finding], **kw: Any) -> str:
    return json.dumps(to_sarif(findings, **kw), indent=2, ensure_ascii=False) + "\n"


# -- statistics ---------------------------------------------------------------------------
def statistics(findings: Sequence[Finding], *, unsafe: bool = False) -> list[dict[str, Any]]:
    counts = Counter(f.code for f in findings)
    names = {f.code: f.name for f in findings}
    fixable = Counter(f.code for f in findings if is_fixable(f, unsafe))
    return [
        {"code": code, "name": names[code], "count": counts[code], "fixable": fixable[code]}
        for code in sorted(counts, key=lambda c: (-counts[c], c))
    ]


def format_statistics(findings: Sequence[Finding], fmt: str = "text", *, unsafe: bool = False) -> str:
    stats = statistics(findings, unsafe=unsafe)
    if fmt == "json":
        return json.dumps(stats, indent=2) + "\n"
    if not stats:
        return ""
    width = max(len(str(s["count"])) for s in stats)
    lines = []
    for s in stats:
        marker = "[*]" if s["fixable"] == s["count"] else ("[-]" if s["fixable"] else "   ")
        lines.append(f"{s['count']:>{width}}\t{s['code']}\t{marker} {s['name']}")
    return "\n".join(lines) + "\n"


# -- rules table --------------------------------------------------------------------------
def rules_info(rules: Iterable[type[Rule]]) -> list[dict[str, Any]]:
    return [
        {
            "code": r.code,
            "name": r.name,
            "severity": r.severity,
            "fixable": r.fixable(),
            "trace_only": bool(getattr(r, "trace_only", False)),
            "summary": r.summary(),
            "options": dict(r.options),
            "url": DOCS_URL.format(code=r.code),
        }
        for r in rules
    ]


def format_rules(rules: Iterable[type[Rule]], fmt: str = "text") -> str:
    info = rules_info(rules)
    if fmt == "json":
        return json.dumps(info, indent=2, default=str) + "\n"
    rows = [("CODE", "NAME", "FIX", "SUMMARY")]
    for r in info:
        rows.append(
            (
                r["code"],
                r["name"],
                "yes" if r["fixable"] else "",
                r["summary"] + (" (--confirm only)" if r["trace_only"] else ""),
            )
        )
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    return "".join(f"{a:<{w0}}  {b:<{w1}}  {c:<{w2}}  {d}".rstrip() + "\n" for a, b, c, d in rows)
