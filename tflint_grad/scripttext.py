"""Text that comes from a traced script, inside the tool's own evidence.

``--confirm`` runs code under review: whatever it prints or puts in an exception is the
script's words, not the tool's, and may be crafted (a secret it read, newlines, GitHub
workflow commands such as ``::error::`` or ``::add-mask::``). Such text enters a reason or an
evidence string only through ``quote``: cut to ``LIMIT`` characters, on one line, without
control characters, between ``«`` and ``»`` (which it can never contain itself). ``redact``
drops every quoted part again: SARIF and GitHub annotations carry the verdict and the tool's
own evidence only, unless ``--verbose`` asks for the script's words too.
"""

from __future__ import annotations

import re
import unicodedata

OPEN, CLOSE = "\u00ab", "\u00bb"  # « »
LIMIT = 120
OMITTED = f"{OPEN}script text omitted{CLOSE}"
_QUOTED = re.compile(f"{OPEN}[^{OPEN}{CLOSE}]*{CLOSE}")
_SPACES = re.compile(r"\s+")


def _printable(ch: str) -> str:
    if ch in (OPEN, CLOSE):
        return {OPEN: "\u2039", CLOSE: "\u203a"}[ch]  # ‹ ›
    return _visible(ch)


def _visible(ch: str) -> str:
    if ch.isspace():
        return " "
    if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn"):  # controls, bidi overrides...
        return "\ufffd"
    return ch


def clean(text: object, limit: int = LIMIT, *, keep_quotes: bool = False) -> str:
    """``text`` on one line, without control characters (nor quote marks unless ``keep_quotes``:
    the tool's own text holding quoted parts), at most ``limit`` characters."""
    s = text if isinstance(text, str) else str(text)
    s = s[: limit * 4]  # bounded work on huge input
    s = _SPACES.sub(" ", "".join(map(_visible if keep_quotes else _printable, s))).strip()
    if len(s) > limit:
        s = s[: limit - 1].rstrip() + "\u2026"
    return s


def quote(text: object, limit: int = LIMIT) -> str:
    """The script's own words, marked as such (see the module docstring)."""
    return f"{OPEN}{clean(text, limit)}{CLOSE}"


def redact(text: str | None) -> str | None:
    """``text`` with every quoted part of the script's words replaced by ``OMITTED``."""
    if not text:
        return text
    return _QUOTED.sub(OMITTED, text)


def has_script_text(text: str | None) -> bool:
    return text is not None and _QUOTED.search(text) is not None
