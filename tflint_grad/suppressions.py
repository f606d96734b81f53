"""``# noqa`` suppressions: one implementation for the CLI, the flake8 plugin and the editor.

The rules are ruff's:

* Only real comments count. ``# noqa`` or ``# tflint-grad: noqa`` inside a string or a
  docstring (one that documents the directive, say) silences nothing.
* ``# noqa`` on a line silences every finding on it; ``# noqa: TFG101, TFG201`` only
  those codes. Codes are **exact**: ``# noqa: TFG1`` silences nothing (a prefix is not
  a code). A finding spanning several lines is silenced by a directive on its first or
  its last line.
* ``# tflint-grad: noqa`` in a comment anywhere silences the whole file;
  ``# tflint-grad: noqa: TFG101`` only those codes in the whole file.

(Under flake8, flake8 also applies its own ``# noqa`` handling to what the plugin
reports, and flake8 matches code prefixes: there ``# noqa: TFG1`` silences TFG101.)
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

_CODES = r"[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*"
NOQA = re.compile(rf"#\s*noqa(?::\s*(?P<codes>{_CODES}))?", re.IGNORECASE)
FILE_NOQA = re.compile(rf"#\s*tflint-grad:\s*noqa(?::\s*(?P<codes>{_CODES}))?", re.IGNORECASE)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _codes(m: re.Match[str]) -> set[str]:
    codes = m.group("codes")
    return {c.strip().upper() for c in codes.split(",")} if codes else set()


@dataclass
class Suppressions:
    file: set[str] | None = None  # None: no file directive; empty: the whole file
    lines: dict[int, set[str]] = field(default_factory=dict)  # 1-based line -> codes (empty: all)

    @property
    def whole_file(self) -> bool:
        return self.file is not None and not self.file

    def suppresses(self, code: str, first_line: int, last_line: int | None = None) -> bool:
        if self.file is not None and (not self.file or code in self.file):
            return True
        for line in {first_line, last_line if last_line is not None else first_line}:
            codes = self.lines.get(line)
            if codes is not None and (not codes or code in codes):
                return True
        return False


def comments(text: str) -> list[tuple[int, str]]:
    """(1-based line, text) of every comment. A text Python cannot tokenize falls back to
    every ``#`` that is not obviously inside a quote on its line."""
    out: list[tuple[int, str]] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                out.append((tok.start[0], tok.string))
        return out
    except (tokenize.TokenError, SyntaxError, IndentationError):
        out = []
    for i, line in enumerate(_LINE_BREAK.split(text), start=1):
        at = line.find("#")
        if at >= 0 and line.count('"', 0, at) % 2 == 0 and line.count("'", 0, at) % 2 == 0:
            out.append((i, line[at:]))
    return out


def parse(text: str) -> Suppressions:
    """The directives of a source text (cheap when it has none)."""
    out = Suppressions()
    if "noqa" not in text and "NOQA" not in text.upper():
        return out
    for line, comment in comments(text):
        if "noqa" not in comment.lower():
            continue
        m = FILE_NOQA.search(comment)
        if m is not None:
            codes = _codes(m)
            out.file = set() if not codes or out.file == set() else (out.file or set()) | codes
            continue
        m = NOQA.search(comment)
        if m is not None:
            out.lines[line] = _codes(m)
    return out


def no_comment_lines(text: str, upto: int | None = None) -> set[int]:
    """1-based lines whose end a trailing comment cannot follow (inside a string, or
    continued with a backslash); with ``upto``, the answer is only complete up to that line
    (the text is tokenized no further: ``tokenize`` costs ~0.2 s on 5,000 lines)."""
    bad: set[int] = set()
    comment_rows: set[int] = set()
    fstring_starts: list[int] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if upto is not None and tok.start[0] > upto:
                break
            kind = tok.type
            if kind == tokenize.COMMENT:
                comment_rows.add(tok.start[0])
            elif kind == tokenize.STRING and tok.end[0] > tok.start[0]:
                bad.update(range(tok.start[0], tok.end[0]))
            elif kind == getattr(tokenize, "FSTRING_START", -1):
                fstring_starts.append(tok.start[0])
            elif kind == getattr(tokenize, "FSTRING_END", -1) and fstring_starts:
                bad.update(range(fstring_starts.pop(), tok.end[0]))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        pass
    for i, line in enumerate(_LINE_BREAK.split(text), start=1):
        if line.rstrip().endswith("\\") and i not in comment_rows:
            bad.add(i)
    return bad


def noqa_line(first: int, last: int, no_comment: set[int]) -> int | None:
    """The line a ``# noqa`` for a finding on ``first``..``last`` goes on (None: nowhere)."""
    if first not in no_comment:
        return first
    if last not in no_comment:
        return last
    return None


def line_with_codes(line: str, codes: Iterable[str], comment: str | None = None) -> str | None:
    """``line`` with ``# noqa: CODES`` added (merged into the ``# noqa:`` list of its real
    comment ``comment``, if any); None when it already silences them all. A ``# noqa``
    inside a string on the line is left alone."""
    wanted = sorted(set(codes))
    at_comment = line.rfind(comment) if comment else -1
    m = NOQA.search(comment) if comment and at_comment >= 0 else None
    if m is not None and not FILE_NOQA.search(comment or ""):
        present = _codes(m)
        if not present:
            return None  # a bare noqa directive already silences everything
        missing = [c for c in wanted if c not in present]
        if not missing:
            return None
        at = at_comment + m.end("codes")
        return line[:at] + ", " + ", ".join(missing) + line[at:]
    body = line.rstrip()
    return f"{body}  # noqa: {', '.join(wanted)}" + line[len(body) :].lstrip(" \t")


def add_noqa(text: str, lines_codes: dict[int, set[str]]) -> tuple[str, int]:
    """Add ``# noqa: CODE`` directives: ``lines_codes`` maps 1-based lines to codes.
    Returns the new text and the number of lines changed (ruff's ``--add-noqa``)."""
    real = dict(comments(text))
    parts = text.splitlines(keepends=True)
    changed = 0
    for line, codes in sorted(lines_codes.items()):
        if not 0 < line <= len(parts):
            continue
        raw = parts[line - 1]
        body = raw.rstrip("\r\n")
        ending = raw[len(body) :]
        new = line_with_codes(body, codes, real.get(line))
        if new is not None:
            parts[line - 1] = new + ending
            changed += 1
    return "".join(parts), changed


def lines_of(findings: Sequence[object], text: str) -> dict[int, set[str]]:
    """Where ``--add-noqa`` puts each finding's code (findings of a .py file)."""
    no_comment = no_comment_lines(text)
    out: dict[int, set[str]] = {}
    for f in findings:
        first = int(f.data.get("source_line", f.line))  # type: ignore[attr-defined]
        last = first + (f.end_line - f.line)  # type: ignore[attr-defined]
        line = noqa_line(first, last, no_comment)
        if line is not None:
            out.setdefault(line, set()).add(f.code)  # type: ignore[attr-defined]
    return out
