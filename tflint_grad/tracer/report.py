"""What a trace run reports back (plain JSON), and helpers the rule oracles use.

The harness writes one JSON object::

    {"status": "finished" | "stopped" | "error" | "timeout" | "memory" | "killed" | "crashed" | "unavailable",
     "reason": str | None,           # human readable: "script stopped at line 12: FileNotFoundError: data.csv"
     "error_line": int | None,       # line of the script where it raised, if any
     "steps": int,                   # training steps counted
     "step_limit": int,
     "executed_lines": [int, ...],   # lines of the user script that ran
     "events": [{"kind": str, "line": int, ...}, ...],
     "tf_version": str, "keras": str, "duration": float}

Event kinds and their fields are documented in ``harness.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OK_STATUSES = ("finished", "stopped")


@dataclass
class TraceResult:
    status: str
    reason: str | None = None
    error_line: int | None = None
    steps: int = 0
    step_limit: int = 0
    executed_lines: set[int] = field(default_factory=set)
    events: list[dict[str, Any]] = field(default_factory=list)
    tf_version: str | None = None
    keras: str | None = None
    duration: float = 0.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TraceResult":
        return cls(
            status=d.get("status", "crashed"),
            reason=d.get("reason"),
            error_line=d.get("error_line"),
            steps=int(d.get("steps") or 0),
            step_limit=int(d.get("step_limit") or 0),
            executed_lines=set(d.get("executed_lines") or ()),
            events=list(d.get("events") or ()),
            tf_version=d.get("tf_version"),
            keras=d.get("keras"),
            duration=float(d.get("duration") or 0.0),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status, "reason": self.reason, "error_line": self.error_line,
            "steps": self.steps, "step_limit": self.step_limit,
            "executed_lines": sorted(self.executed_lines), "events": self.events,
            "tf_version": self.tf_version, "keras": self.keras, "duration": self.duration,
        }

    @property
    def ran(self) -> bool:
        return self.status in OK_STATUSES

    def executed(self, line: int) -> bool:
        return line in self.executed_lines

    def events_of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("kind") == kind]

    def events_at(self, kind: str, line: int | None, end_line: int | None = None) -> list[dict[str, Any]]:
        """Events of ``kind`` recorded at ``line`` (or within [line, end_line])."""
        if line is None:
            return self.events_of(kind)
        hi = end_line if end_line is not None else line
        return [e for e in self.events if e.get("kind") == kind and line <= (e.get("line") or -1) <= hi]
