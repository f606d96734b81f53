"""The event recorder the probes write to (runs in the traced child; TF-free itself)."""

from __future__ import annotations

import os
import sys
from types import FrameType
from typing import Any


class Recorder:
    def __init__(self, script: str) -> None:
        self.script = os.path.realpath(script)
        self.events: list[dict[str, Any]] = []
        self.step = 0
        self._seen: dict[tuple, dict[str, Any]] = {}

    def user_line(self, outermost: bool = False) -> int | None:
        """Line of the innermost (or outermost) frame of the user script on the stack."""
        frame: FrameType | None = sys._getframe(1)
        found = None
        while frame is not None:
            if os.path.realpath(frame.f_code.co_filename) == self.script:
                found = frame.f_lineno
                if not outermost:
                    return found
            frame = frame.f_back
        return found

    def emit(self, kind: str, line: int | None, *, key: Any = None, **fields: Any) -> dict[str, Any]:
        """Record an event; with ``key``, later events with the same key only bump ``count``."""
        if key is not None:
            k = (kind, line, key)
            prev = self._seen.get(k)
            if prev is not None:
                prev["count"] = prev.get("count", 1) + 1
                return prev
        event = {"kind": kind, "line": line, "step": self.step, **fields}
        if key is not None:
            event["count"] = 1
            self._seen[(kind, line, key)] = event
        self.events.append(event)
        return event
