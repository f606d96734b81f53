"""The oracle contract: every event the traced child records, and the trace result it writes.

TensorFlow-free: the traced child (``probes``, ``harness``) emits these events, the parent reads
them back as :class:`TraceResult`, and each rule's ``confirm()`` oracle judges them. One
``TypedDict`` per event kind; :data:`EVENT_TYPES` maps the kind to it and :func:`problems` checks
an event against it (the rule examples' synthetic traces and the real traces of the TF tests are
both checked). The field meanings are documented in :mod:`tflint_grad.tracer.report`.

Every event has ``kind``, ``line`` (1-based line in the user script) and ``step``; events recorded
once per site also carry ``count``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

OK_STATUSES = ("finished", "stopped")

Status = Literal["finished", "stopped", "error", "timeout", "memory", "killed", "crashed", "unavailable"]
GradState = Literal["none", "zero", "ok"]


class _Base(TypedDict, total=False):
    kind: str
    line: int | None
    step: int
    count: int


class GradVariable(TypedDict, total=False):
    name: str
    trainable: bool
    shape: list[int]
    grad: GradState
    norm: float | None
    units_identical: bool
    nonfinite: bool
    kind: Literal["tensor"]


class Blocked(TypedDict, total=False):
    variable: str
    op: str | None
    op_type: str | None
    line: int | None


class GradientCall(_Base, total=False):
    api: str
    variables: list[GradVariable]
    blocked: list[Blocked]
    disconnected: list[str]
    evaluated: bool
    unwatched: list[str]
    unclassified: list[str]


class ApplyGradients(_Base, total=False):
    api: str
    variables: list[str]
    none: list[str]


LayerCall = TypedDict(
    "LayerCall",
    {
        "kind": str,
        "line": "int | None",
        "step": int,
        "count": int,
        "layer": str,
        "class": str,
        "training": "bool | None",
        "in_tape": bool,
        "keras": str,
        "trainable": bool,
        "training_kind": str,
        "stack": "list[int]",
    },
    total=False,
)


class ModelLayers(_Base, total=False):
    """The BN/Dropout layers found (recursively) in a model the script called at ``line``."""

    model: str
    layers: list[str]
    classes: list[str]


class MovingStats(_Base, total=False):
    layer: str
    before: dict[str, list[float]]
    after: dict[str, list[float]]
    changed: bool
    keras: bool


class Initializer(_Base, total=False):
    variable: str
    shape: list[int]
    fan_in: int | None
    std: float | None
    mean: float
    init: str | None
    init_config: dict[str, Any]
    init_line: int | None
    layer: str | None


class LayerGradNorms(_Base, total=False):
    norms: list[dict[str, Any]]
    counterfactual: list[dict[str, Any]] | None
    first_ratio: float | None
    flagged: list[dict[str, Any]]
    batches: int


OptimizerCreated = TypedDict(
    "OptimizerCreated",
    {"kind": str, "line": "int | None", "step": int, "count": int, "class": str},
    total=False,
)


class ClipNone(_Base, total=False):
    function: str


class AssignOp(_Base, total=False):
    op: str
    op_type: str
    target: str
    ran: bool
    moving: bool
    before: list[float] | None
    after: list[float] | None


class UpdateOps(_Base, total=False):
    train_op: str
    update_ops: list[str]
    ancestors: bool
    fetched_together: bool
    fetched: bool
    api: str


class UpdateOpsCollected(_Base, total=False):
    size: int
    size_at_first_step: int | None


class Nonfinite(_Base, total=False):
    op: str | None
    op_type: str | None
    where: Literal["loss", "gradient", "forward"]
    value: str


class LogInput(_Base, total=False):
    op: str
    input_op_type: str
    clipped: bool
    differentiated: bool
    complement: bool


class LogitsInput(_Base, total=False):
    function: str
    input_op_type: str


class SqrtInput(_Base, total=False):
    op: str
    chain: list[str]
    input_op_type: str | None
    squares: bool
    clipped: bool
    zeros: int
    size: int
    zero_step: int
    differentiated: bool


class ProbeFailed(_Base, total=False):
    """A probe raised: the observations it owns are incomplete (``probe``: its name)."""

    probe: str
    error: str


EVENT_TYPES: dict[str, type] = {
    "gradient_call": GradientCall,
    "apply_gradients": ApplyGradients,
    "layer_call": LayerCall,
    "model_layers": ModelLayers,
    "moving_stats": MovingStats,
    "initializer": Initializer,
    "layer_grad_norms": LayerGradNorms,
    "optimizer_created": OptimizerCreated,
    "clip_none": ClipNone,
    "assign_op": AssignOp,
    "update_ops": UpdateOps,
    "update_ops_collected": UpdateOpsCollected,
    "nonfinite": Nonfinite,
    "log_input": LogInput,
    "logits_input": LogitsInput,
    "sqrt_input": SqrtInput,
    "probe_failed": ProbeFailed,
}

Event = dict[str, Any]


def event(kind: str, line: int | None, **fields: Any) -> Event:
    """An event as the child records it (for synthetic traces: the rule examples); ``step``
    defaults to 1."""
    return {"kind": kind, "line": line, "step": fields.pop("step", 1), **fields}


def problems(ev: Event) -> list[str]:
    """What in ``ev`` the contract does not know: an unknown kind or field (empty: conforms)."""
    kind = ev.get("kind")
    cls = EVENT_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        return [f"unknown event kind {kind!r}"]
    known = set(cls.__annotations__)  # a TypedDict's annotations include its bases'
    return [f"{kind}: unknown field {k!r}" for k in ev if k not in known]


@dataclass
class TraceResult:
    """What one traced run reports back (the JSON the harness writes, parsed)."""

    status: str
    reason: str | None = None
    error_line: int | None = None
    steps: int = 0
    step_limit: int = 0
    executed_lines: set[int] = field(default_factory=set)
    events: list[Event] = field(default_factory=list)
    tf_version: str | None = None
    keras: str | None = None
    duration: float = 0.0
    # What the tracer substituted to let the script run (synthetic MNIST, a stubbed matplotlib...).
    stand_ins: list[str] = field(default_factory=list)
    sandbox: list[str] = field(default_factory=list)  # the kernel protections that were active

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TraceResult:
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
            stand_ins=[str(s) for s in d.get("stand_ins") or ()],
            sandbox=[str(p) for p in d.get("sandbox") or () if isinstance(p, str)],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "error_line": self.error_line,
            "steps": self.steps,
            "step_limit": self.step_limit,
            "executed_lines": sorted(self.executed_lines),
            "events": self.events,
            "tf_version": self.tf_version,
            "keras": self.keras,
            "duration": self.duration,
            "stand_ins": list(self.stand_ins),
            "sandbox": self.sandbox,
        }

    @property
    def ran(self) -> bool:
        return self.status in OK_STATUSES

    def executed(self, line: int) -> bool:
        return line in self.executed_lines

    def events_of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.get("kind") == kind]

    def events_at(self, kind: str, line: int | None, end_line: int | None = None) -> list[Event]:
        """Events of ``kind`` recorded at ``line`` (or within [line, end_line])."""
        if line is None:
            return self.events_of(kind)
        hi = end_line if end_line is not None else line
        return [e for e in self.events if e.get("kind") == kind and line <= (e.get("line") or -1) <= hi]

    def probe_failures(self) -> list[str]:
        """Names of the probes that failed during the run (their observations are incomplete)."""
        return [str(e.get("probe")) for e in self.events_of("probe_failed")]
