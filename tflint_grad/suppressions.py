"""``# noqa`` comments: which findings a file's text silences (shared by the engine and verdicts)."""

from __future__ import annotations

import re
from dataclasses import dataclass

_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*))?", re.IGNORECASE)
_FILE_NOQA = re.compile(
    r"#\s*tflint-grad:\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*))?", re.IGNORECASE
)


def _parse_codes(m: re.Match) -> set[str]:
    codes = m.group("codes")
    return {c.strip().upper() for c in codes.split(",")} if codes else set()


def file_noqa(text: str) -> set[str] | None:
    """None: no file-level directive; empty set: silence everything; else the codes."""
    if "tflint-grad" not in text:
        return None
    found: set[str] | None = None
    for m in _FILE_NOQA.finditer(text):
        codes = _parse_codes(m)
        if not codes:
            return set()
        found = (found or set()) | codes
    return found


def line_noqa(text: str) -> dict[int, set[str]]:
    """Line -> codes of its ``# noqa`` comment (empty set: every code)."""
    out: dict[int, set[str]] = {}
    if "noqa" not in text.lower():
        return out
    for i, line in enumerate(text.splitlines(), start=1):
        if "noqa" not in line.lower():
            continue
        m = _NOQA.search(line)
        if m and not _FILE_NOQA.search(line):
            out[i] = _parse_codes(m)
    return out


@dataclass(frozen=True)
class Suppressions:
    """The noqa directives of one text."""

    file: set[str] | None
    lines: dict[int, set[str]]

    @classmethod
    def of(cls, text: str) -> Suppressions:
        return cls(file_noqa(text), line_noqa(text))

    def suppresses(self, code: str, *lines: int) -> bool:
        """Whether ``code`` reported at any of ``lines`` (lines of the parsed text) is silenced."""
        if self.file is not None and (not self.file or code in self.file):
            return True
        for line in lines:
            codes = self.lines.get(line)
            if codes is not None and (not codes or code in codes):
                return True
        return False
