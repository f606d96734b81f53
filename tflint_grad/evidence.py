"""Evidence helpers shared by the rule oracles (TF-free): reading events into facts and text.

The policy they serve (``../shared/RULES.md``): a verdict comes from what the trace observed.
Absence of an observation is never proof of absence, and the shape of a defect is not its
consequence.
"""

from __future__ import annotations

from dataclasses import dataclass

from tflint_grad.tracer.events import Event, TraceResult


def moving_text(stats: Event) -> str:
    """ "`bn` moving_mean [0.0] -> [0.0] (unchanged)" for a ``moving_stats`` event."""
    before = (stats.get("before") or {}).get("moving_mean")
    after = (stats.get("after") or {}).get("moving_mean")
    state = "changed" if stats.get("changed") else "unchanged"
    return f"`{stats.get('layer')}` moving_mean {before} -> {after} ({state})"


def layer_calls(trace: TraceResult, line: int, end: int) -> list[Event]:
    """BN/Dropout ``layer_call`` events attributed to the model call at [line, end]: any script
    line on their call stack (``stack``: also inside ``tf.function`` traces and subclassed
    ``call``s), else the outermost script frame (``line``)."""
    out = []
    for e in trace.events_of("layer_call"):
        stack = e.get("stack")
        at = [x for x in stack if isinstance(x, int)] if isinstance(stack, list) else []
        if not at and isinstance(e.get("line"), int):
            at = [e["line"]]
        if any(line <= x <= end for x in at):
            out.append(e)
    return out


def model_layers(trace: TraceResult, line: int, end: int) -> list[Event]:
    return trace.events_at("model_layers", line, end)


@dataclass(frozen=True)
class InferenceMode:
    """What the layers that ran in inference mode at a training call did."""

    parts: list[str]  # "BatchNormalization `bn` ran with training=None in the tape"
    moves: list[str]  # moving-statistics lines of those BN layers
    harmful: bool  # a consequence was observed: stats that did not move, or layers off in the tape
    updated_elsewhere: bool  # every such BN's statistics moved: another call trains them


def inference_mode(trace: TraceResult, falsy: list[Event]) -> InferenceMode:
    stats = {e.get("layer"): e for e in trace.events_of("moving_stats")}
    parts, moves = [], []
    harmful = False
    bn_moved = []
    for e in falsy[:8]:
        layer = e.get("layer")
        seen = e.get("training")
        tape = " in the tape" if e.get("in_tape") else ""
        parts.append(f"{e.get('class', 'layer')} `{layer}` ran with training={'None' if seen is None else seen}{tape}")
        s = stats.get(layer)
        if "Normalization" in str(e.get("class", "")) and e.get("trainable") is False:
            parts[-1] += " (frozen: inference mode whatever the flag)"
            continue
        if s is not None and "Normalization" in str(e.get("class", "")):
            moves.append(moving_text(s))
            bn_moved.append(bool(s.get("changed")))
            harmful = harmful or not s.get("changed")
        elif e.get("in_tape"):
            harmful = True  # Dropout off (or BN on moving statistics) while the gradient is recorded
    updated_elsewhere = bool(bn_moved) and all(bn_moved) and len(bn_moved) == len(falsy[:8])
    return InferenceMode(parts, moves, harmful and not updated_elsewhere, updated_elsewhere)
