"""Reports for people and CI systems beyond output.py's formats: coloured text with
``--show-source`` snippets, JUnit XML (CI test reports) and GitLab Code Quality JSON.
All three behave as their ruff namesakes do.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence

from tflint_grad import output
from tflint_grad.finding import Finding

TOOL = "tflint-grad"
BOLD, DIM, RED, CYAN, YELLOW, RESET = "\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[36m", "\x1b[33m", "\x1b[0m"


def use_color(choice: str, stream: object, env: Mapping[str, str] | None = None) -> bool:
    """``--color auto|always|never``; auto: a terminal, unless ``NO_COLOR`` is set
    (``FORCE_COLOR`` forces colour), as ruff decides."""
    env = os.environ if env is None else env
    if choice == "always":
        return True
    if choice == "never":
        return False
    if env.get("NO_COLOR"):
        return False
    if env.get("FORCE_COLOR"):
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty()) and env.get("TERM") != "dumb"
    except (OSError, ValueError):
        return False


def _paint(text: str, *styles: str, color: bool) -> str:
    return f"{''.join(styles)}{text}{RESET}" if color and text else text


def snippet(f: Finding, text: str | None, *, color: bool = False) -> str:
    """The finding's first source line with carets under its span (flake8's ``--show-source``)."""
    if text is None:
        return ""
    lines = text.splitlines()
    number = int(f.data.get("source_line", f.line))
    if not 0 < number <= len(lines):
        return ""
    line = lines[number - 1].expandtabs(1)
    start = max(f.column - 1, 0)
    end = f.end_column - 1 if f.end_line == f.line else len(line)
    width = max(1, min(end, len(line)) - start)
    gutter = str(f.line)
    pad = " " * len(gutter)
    caret = _paint("^" * width, RED, BOLD, color=color)
    bar = _paint("|", CYAN, color=color)
    return f"{pad} {bar}\n{_paint(gutter, CYAN, color=color)} {bar} {line}\n{pad} {bar} {' ' * start}{caret}\n"


def format_text(
    findings: Sequence[Finding],
    *,
    color: bool = False,
    sources: Mapping[str, str] | None = None,
    traced: bool = False,
    show_fixes: bool = False,
    unsafe: bool = False,
) -> str:
    """output.format_text, coloured (path bold, code red, ``[*]`` cyan) and with snippets."""
    if not color and sources is None:
        return output.format_text(findings, traced=traced, show_fixes=show_fixes, unsafe=unsafe)
    out: list[str] = []
    for f in findings:
        block = output.format_text([f], traced=traced, show_fixes=show_fixes, unsafe=unsafe)
        head, _, rest = block.partition("\n")
        if color:
            loc = output.location(f)
            tail = head[len(loc) + 2 :] if head.startswith(loc + ": ") else head
            code, _, message = tail.partition(" ")
            marker = ""
            if message.startswith("[*] "):
                marker, message = _paint("[*]", CYAN, color=True) + " ", message[4:]
            path, sep, pos = loc.partition(":")
            head = (
                f"{_paint(path, BOLD, color=True)}{sep}{pos}: {_paint(code, RED, BOLD, color=True)} {marker}{message}"
            )
        out.append(head + "\n")
        if sources is not None:
            out.append(snippet(f, sources.get(f.path), color=color))
        out.append(rest)
    return "".join(out)


# -- junit --------------------------------------------------------------------------------
def format_junit(findings: Sequence[Finding]) -> str:
    """JUnit XML: one test suite per file, one failing test case per finding (ruff's layout)."""
    from xml.sax.saxutils import escape, quoteattr  # pulls in urllib: ~20 ms of every start-up

    lines = ['<?xml version="1.0" encoding="UTF-8"?>']
    n = len(findings)
    lines.append(f'<testsuites name="{TOOL}" tests="{max(n, 1)}" failures="{n}" errors="0">')
    if not findings:
        lines.append(f'  <testsuite name="{TOOL}" tests="1" disabled="0" errors="0" failures="0" package="{TOOL}">')
        lines.append(f'    <testcase name="No errors found" classname="{TOOL}"/>')
        lines.append("  </testsuite>")
    by_path: dict[str, list[Finding]] = {}
    for f in findings:
        by_path.setdefault(f.path, []).append(f)
    for path, group in by_path.items():
        lines.append(
            f'  <testsuite name={quoteattr(path)} tests="{len(group)}" disabled="0" errors="0" '
            f'failures="{len(group)}" package="{TOOL}">'
        )
        for f in group:
            where = f"cell {f.cell + 1}, " if f.cell is not None else ""
            body = f"{where}line {f.line}, col {f.column}, {f.message}"
            lines.append(
                f"    <testcase name={quoteattr(f'{TOOL}.{f.code}')} classname={quoteattr(path)} "
                f'line="{f.line}" column="{f.column}">'
            )
            lines.append(f"      <failure message={quoteattr(f.message)}>{escape(body)}</failure>")
            lines.append("    </testcase>")
        lines.append("  </testsuite>")
    lines.append("</testsuites>")
    return "\n".join(lines) + "\n"


# -- gitlab -------------------------------------------------------------------------------
GITLAB_SEVERITY = {"error": "critical", "warning": "major", "info": "minor"}


def format_gitlab(findings: Sequence[Finding], project_dir: str | None = None) -> str:
    """GitLab Code Quality report: paths relative to ``CI_PROJECT_DIR`` (else the working
    directory), a stable fingerprint per finding (identical findings are numbered)."""
    base = project_dir or os.environ.get("CI_PROJECT_DIR") or os.getcwd()
    seen: dict[str, int] = {}
    out = []
    for f in findings:
        path = os.path.relpath(os.path.abspath(f.path), base).replace(os.sep, "/")
        key = f"{path}\0{f.code}\0{f.message}"
        seen[key] = seen.get(key, 0) + 1
        fingerprint = hashlib.sha256(f"{key}\0{seen[key]}".encode()).hexdigest()[:32]
        out.append(
            {
                "check_name": f.code,
                "description": f"{f.code}: {f.message}",
                "severity": GITLAB_SEVERITY.get(f.severity, "major"),
                "fingerprint": fingerprint,
                "location": {
                    "path": path,
                    "positions": {
                        "begin": {"line": f.line, "column": f.column},
                        "end": {"line": f.end_line, "column": f.end_column},
                    },
                },
            }
        )
    return json.dumps(out, indent=2, ensure_ascii=False) + "\n"
