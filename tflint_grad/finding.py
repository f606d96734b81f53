"""The one type that flows between the static pass, the tracer and the output formats."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]


class Verdict(StrEnum):
    """What ``--confirm`` concluded about a finding (a ``str``: JSON and text output print the value).

    ``refuted`` only when the flagged code ran and the observation that would show the defect
    was made and came out clean; ``confirmed`` only when the trace showed the consequence;
    anything else is ``inconclusive`` with the reason (``../shared/RULES.md``, evidence policy).
    """

    UNCONFIRMED = "unconfirmed"
    CONFIRMED = "confirmed"
    REFUTED = "refuted"
    INCONCLUSIVE = "inconclusive"


Applicability = Literal["safe", "unsafe"]
# high: the code shows the finding's premise; low: the premise was assumed (a model whose
# layers cannot be seen, an unknown callable). Low findings are hidden by default.
Confidence = Literal["high", "low"]
CONFIDENCE_RANK: dict[str, int] = {"low": 0, "high": 1}

DOCS_URL = "https://github.com/tflint-grad/tflint-grad/blob/main/docs/rules/{code}.md"


@dataclass(frozen=True)
class Edit:
    """Replace the text between two 1-based (line, column) positions; end is exclusive.

    In a notebook, positions are inside the code cell ``cell`` (0-based index over all
    cells, as ``Finding.cell``); ``cell`` is None (and absent from JSON) for .py files.
    """

    line: int
    column: int
    end_line: int
    end_column: int
    content: str
    cell: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        if self.cell is None:
            del d["cell"]
        return d


@dataclass(frozen=True)
class Fix:
    message: str
    edits: tuple[Edit, ...]
    applicability: Applicability = "safe"

    def to_dict(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "applicability": self.applicability,
            "edits": [e.to_dict() for e in self.edits],
        }


@dataclass
class Finding:
    """A diagnostic. Lines and columns are 1-based; ``end_column`` is exclusive.

    For notebooks ``line`` is the line inside the cell and ``cell`` the 0-based
    index over all cells; ``source_line`` is the line in the concatenated code
    that the tracer and fixes work with.
    """

    code: str
    name: str
    path: str
    line: int
    column: int
    end_line: int
    end_column: int
    message: str
    severity: Severity = "warning"
    verdict: Verdict = Verdict.UNCONFIRMED
    evidence: str | None = None
    fix: Fix | None = None
    cell: int | None = None
    confidence: Confidence = "high"
    # Extra facts a rule records for its confirmation oracle (not part of the JSON contract).
    data: dict[str, Any] = field(default_factory=dict, compare=False)

    def shown_at(self, min_confidence: Confidence) -> bool:
        """Whether this finding is at or above ``min_confidence``."""
        return CONFIDENCE_RANK[self.confidence] >= CONFIDENCE_RANK[min_confidence]

    @property
    def url(self) -> str:
        return DOCS_URL.format(code=self.code)

    def sort_key(self) -> tuple[str, int, int, int, str]:
        return (self.path, self.cell if self.cell is not None else -1, self.line, self.column, self.code)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "code": self.code,
            "name": self.name,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
            "message": self.message,
            "severity": self.severity,
            "verdict": self.verdict,
            "confidence": self.confidence,
            "evidence": self.evidence,
            "fix": self.fix.to_dict() if self.fix else None,
            "url": self.url,
        }
        if self.cell is not None:
            d["cell"] = self.cell
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        fix = d.get("fix")
        if fix:
            fix = Fix(
                message=fix["message"],
                applicability=fix["applicability"],
                edits=tuple(Edit(**e) for e in fix["edits"]),
            )
        return cls(
            code=d["code"],
            name=d["name"],
            path=d["path"],
            line=d["line"],
            column=d["column"],
            end_line=d["end_line"],
            end_column=d["end_column"],
            message=d["message"],
            severity=d.get("severity", "warning"),
            verdict=Verdict(d.get("verdict") or Verdict.UNCONFIRMED),
            evidence=d.get("evidence"),
            fix=fix,
            cell=d.get("cell"),
            confidence=d.get("confidence", "high"),
            data=d.get("data") or {},
        )
