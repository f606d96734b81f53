"""The base class every rule file subclasses, and the example types its tests run.

A rule reads like its documentation (Fixit's style): the class docstring has the
sections *What it does*, *Why is this bad*, *Example* and *Use instead*; ``VALID``
and ``INVALID`` hold examples that ``tests/test_rule_examples.py`` runs; ``visit_<Node>``
methods inspect libcst nodes with the shared :class:`~tflint_grad.analysis.FileContext`;
``confirm`` is the oracle that turns tracing events into a verdict.
"""

from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import libcst as cst

from tflint_grad.finding import Applicability, Confidence, Edit, Finding, Fix, Severity, Verdict

if TYPE_CHECKING:
    from tflint_grad.analysis import FileContext
    from tflint_grad.tracer.events import TraceResult


@dataclass(frozen=True)
class Valid:
    """Code the rule must not flag."""

    code: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Invalid:
    """Code the rule must flag.

    ``line``: the 1-based line of the (first) finding; ``message``: a substring of its
    message; ``fixed``: the whole code after applying the rule's fixes (safe and unsafe);
    ``confidence``: of the findings (``low``: a candidate hidden by default, shown by
    ``--min-confidence low`` or when ``--confirm`` confirms it).
    """

    code: str
    line: int | None = None
    message: str | None = None
    fixed: str | None = None
    count: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    confidence: Confidence = "high"


@dataclass(frozen=True)
class Traced:
    """An oracle example: a finding at ``line`` (with the rule's ``data``), a synthetic trace, and a
    substring of the evidence the verdict must carry. ``tests/test_rule_examples.py`` runs the
    rule's ``CONFIRMS``, ``REFUTES`` and ``INCONCLUSIVE`` lists through :mod:`tflint_grad.verdicts`
    without TensorFlow. ``executed``: the lines that ran (default: the finding's lines and every
    event's line)."""

    events: tuple[dict[str, Any], ...]
    evidence: str = ""
    line: int = 10
    end_line: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    status: str = "finished"
    steps: int = 5
    executed: tuple[int, ...] | None = None
    error_line: int | None = None
    reason: str | None = None

    def trace(self) -> TraceResult:
        from tflint_grad.tracer.events import TraceResult

        lines = set(self.executed) if self.executed is not None else self._default_lines()
        return TraceResult(
            status=self.status,
            reason=self.reason,
            error_line=self.error_line,
            steps=self.steps,
            step_limit=self.steps,
            executed_lines=lines,
            events=[dict(e) for e in self.events],
        )

    def _default_lines(self) -> set[int]:
        lines = set(range(self.line, (self.end_line or self.line) + 1))
        lines |= {e["line"] for e in self.events if isinstance(e.get("line"), int)}
        return lines


@dataclass(frozen=True)
class Outcome:
    """What an oracle concluded from a trace: confirmed, refuted or inconclusive, and why."""

    verdict: Verdict
    evidence: str

    def __post_init__(self) -> None:
        verdict = Verdict(self.verdict)
        if verdict is Verdict.UNCONFIRMED:
            raise ValueError("an oracle concludes confirmed, refuted or inconclusive")
        object.__setattr__(self, "verdict", verdict)


def confirmed(evidence: str) -> Outcome:
    return Outcome(Verdict.CONFIRMED, evidence)


def refuted(evidence: str) -> Outcome:
    return Outcome(Verdict.REFUTED, evidence)


def inconclusive(evidence: str) -> Outcome:
    return Outcome(Verdict.INCONCLUSIVE, evidence)


@dataclass
class Report:
    node: cst.CSTNode
    message: str
    fix: Fix | None
    severity: Severity | None
    data: dict[str, Any]
    confidence: Confidence = "high"


class Rule:
    code: ClassVar[str] = ""
    name: ClassVar[str] = ""
    severity: ClassVar[Severity] = "warning"
    # Cheap pre-filter: the rule runs only on files whose text contains one of these.
    requires: ClassVar[tuple[str, ...]] = ()
    # Per-rule options settable in [tool.tflint-grad.rules.TFGxxx], with their defaults.
    options: ClassVar[dict[str, Any]] = {}
    # Trace-only rules have no static visitor: they are produced by --confirm.
    trace_only: ClassVar[bool] = False
    VALID: ClassVar[list[Valid | str]] = []
    INVALID: ClassVar[list[Invalid]] = []
    # The event kinds the oracle reads: a failed probe of one of them makes a refutation
    # inconclusive (empty: any failed probe does).
    OBSERVES: ClassVar[tuple[str, ...]] = ()
    # Oracle examples over synthetic traces (see Traced): the verdict each must get.
    CONFIRMS: ClassVar[list[Traced]] = []
    REFUTES: ClassVar[list[Traced]] = []
    INCONCLUSIVE: ClassVar[list[Traced]] = []

    def __init__(self, ctx: FileContext, options: dict[str, Any] | None = None) -> None:
        self.ctx = ctx
        self.opts = {**type(self).options, **(options or {})}
        self.reports: list[Report] = []

    # -- reporting ------------------------------------------------------------------
    def report(
        self,
        node: cst.CSTNode,
        message: str,
        *,
        fix: Fix | None = None,
        severity: Severity | None = None,
        data: dict[str, Any] | None = None,
        confidence: Confidence = "high",
    ) -> None:
        """Report a finding at ``node``. ``confidence="low"`` when its premise was assumed,
        not shown by the code; the message then says what was assumed."""
        self.reports.append(Report(node, message, fix, severity, data or {}, confidence))

    def replace(
        self, node: cst.CSTNode, new: cst.CSTNode | str, message: str, applicability: Applicability = "safe"
    ) -> Fix:
        """A fix that replaces ``node``'s source text with ``new`` (a node or code)."""
        text = new if isinstance(new, str) else self.ctx.module.code_for_node(new)
        line, col, end_line, end_col = self.ctx.range(node)
        return Fix(message, (Edit(line, col, end_line, end_col, text),), applicability)

    def finish(self) -> None:
        """Called once after every node has been visited (whole-file checks)."""

    # -- confirmation ---------------------------------------------------------------
    @classmethod
    def confirm(cls, finding: Finding, trace: TraceResult) -> Outcome | None:
        """Map trace events to a verdict. None: this rule has no oracle."""
        return None

    @classmethod
    def discover(cls, trace: TraceResult) -> list[tuple[int, str, str]]:
        """Trace-only rules: findings to create from a trace, as (line, message, evidence)."""
        return []

    # -- documentation --------------------------------------------------------------
    @classmethod
    def docs(cls) -> str:
        return inspect.cleandoc(cls.__doc__ or "")

    @classmethod
    def summary(cls) -> str:
        return cls.docs().split("\n", 1)[0].strip()

    @classmethod
    def fixable(cls) -> bool:
        return any(i.fixed is not None for i in cls.INVALID)

    @classmethod
    def visitors(cls) -> dict[type, str]:
        """``{cst.Call: "visit_Call"}``: the node types the rule visits (read once per class)."""
        out = _VISITORS.get(cls)
        if out is None:
            out = _VISITORS[cls] = {}
            for attr in dir(cls):
                if attr.startswith("visit_"):
                    node_type = getattr(cst, attr[len("visit_") :], None)
                    if isinstance(node_type, type):
                        out[node_type] = attr
        return out


_VISITORS: dict[type[Rule], dict[type, str]] = {}


def dedent(code: str) -> str:
    return textwrap.dedent(code).lstrip("\n")
