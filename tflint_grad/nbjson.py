"""Rewriting cell sources in a notebook's JSON text without touching anything else.

``--fix`` changes only the ``source`` values of the edited code cells: outputs,
metadata, cell ids, key order, indentation and escapes stay byte for byte. The new value
is written in the layout of the old one (a string, or a list of lines one per row at the
old indentation), and the result is checked: it must decode to the original notebook
with only those sources changed.
"""

from __future__ import annotations

import json
import re
from typing import Any

_WS = re.compile(r"[ \t\n\r]*")


class LayoutError(ValueError):
    """The notebook's JSON could not be rewritten safely."""


def _ws(text: str, i: int) -> int:
    m = _WS.match(text, i)
    return m.end() if m else i


def _object(text: str, i: int, dec: json.JSONDecoder) -> tuple[dict[str, tuple[int, int]], int]:
    """Spans of an object's values by key, and the index after the object (``text[i] == "{"``)."""
    members: dict[str, tuple[int, int]] = {}
    i = _ws(text, i + 1)
    if text[i] == "}":
        return members, i + 1
    while True:
        if text[i] != '"':
            raise LayoutError(f"expected a key at {i}")
        key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
        i = _ws(text, i)
        if text[i] != ":":
            raise LayoutError(f"expected ':' at {i}")
        start = _ws(text, i + 1)
        _, end = dec.raw_decode(text, start)
        members[key] = (start, end)
        i = _ws(text, end)
        if text[i] == "}":
            return members, i + 1
        if text[i] != ",":
            raise LayoutError(f"expected ',' at {i}")
        i = _ws(text, i + 1)


def _array(text: str, i: int, dec: json.JSONDecoder) -> list[tuple[int, int]]:
    items: list[tuple[int, int]] = []
    i = _ws(text, i + 1)
    if text[i] == "]":
        return items
    while True:
        _, end = dec.raw_decode(text, i)
        items.append((i, end))
        i = _ws(text, end)
        if text[i] == "]":
            return items
        if text[i] != ",":
            raise LayoutError(f"expected ',' at {i}")
        i = _ws(text, i + 1)


def source_spans(text: str) -> dict[int, tuple[int, int]]:
    """Where each cell's ``source`` value is in the notebook's JSON text, by cell index."""
    dec = json.JSONDecoder()
    try:
        start = _ws(text, 0)
        if text[start] != "{":
            raise LayoutError("the notebook is not a JSON object")
        top, _ = _object(text, start, dec)
        if "cells" not in top or text[top["cells"][0]] != "[":
            raise LayoutError("the notebook has no 'cells' list")
        spans: dict[int, tuple[int, int]] = {}
        for index, (a, _b) in enumerate(_array(text, top["cells"][0], dec)):
            if text[a] == "{":
                members, _ = _object(text, a, dec)
                if "source" in members:
                    spans[index] = members["source"]
        return spans
    except (IndexError, ValueError) as e:
        raise LayoutError(str(e)) from e


def _encode(value: str, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


def _layout(text: str, start: int, end: int, new: str, ascii_only: bool) -> str:
    old_text = text[start:end]
    old = json.loads(old_text)
    if isinstance(old, str):
        return _encode(new, ascii_only)
    lines = new.splitlines(keepends=True)
    if "\n" not in old_text:  # an inline list: ["a\n", "b"]
        sep = ", " if re.search(r'",\s', old_text) or len(old) < 2 else ","
        return "[" + sep.join(_encode(line, ascii_only) for line in lines) + "]"
    newline = "\r\n" if "\r\n" in old_text else "\n"
    m = re.match(r"\[\s*?\r?\n([ \t]*)\S", old_text)
    close = re.search(r"\r?\n([ \t]*)\]$", old_text)
    line_start = text.rfind("\n", 0, start) + 1
    key_indent = re.match(r"[ \t]*", text[line_start:start])
    base = key_indent.group(0) if key_indent else ""
    item = m.group(1) if m else base + " "
    closing = close.group(1) if close else base
    if not lines:
        return "[]"
    body = ("," + newline).join(item + _encode(line, ascii_only) for line in lines)
    return "[" + newline + body + newline + closing + "]"


def replace_sources(text: str, sources: dict[int, str]) -> str:
    """``text`` with the ``source`` of the given cells (by index) replaced."""
    if not sources:
        return text
    spans = source_spans(text)
    missing = set(sources) - set(spans)
    if missing:
        raise LayoutError(f"no source for cell(s) {sorted(missing)}")
    ascii_only = not any(ord(c) > 127 for c in text) and bool(re.search(r"\\u[0-9a-fA-F]{4}", text))
    out = text
    for index in sorted(sources, key=lambda i: spans[i][0], reverse=True):
        start, end = spans[index]
        out = out[:start] + _layout(text, start, end, sources[index], ascii_only) + out[end:]
    _check(text, out, sources)
    return out


def _check(before: str, after: str, sources: dict[int, str]) -> None:
    expected: Any = json.loads(before)
    for index, source in sources.items():
        expected["cells"][index]["source"] = source
    got = json.loads(after)
    for index in sources:
        value = got["cells"][index]["source"]
        if isinstance(value, list):
            got["cells"][index]["source"] = "".join(value)
    if got != expected:
        raise LayoutError("the rewritten notebook would differ outside the edited cells' sources")
