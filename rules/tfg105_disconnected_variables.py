from __future__ import annotations

from tflint_grad.rule import Invalid, Outcome, Rule, Traced, Valid, confirmed, inconclusive
from tflint_grad.tracer.events import event

_SHOW = 8


def _names(names: list[str]) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:_SHOW])
    return shown + (f" and {len(names) - _SHOW} more" if len(names) > _SHOW else "")


class DisconnectedVariables(Rule):
    """Variables in the gradient call's list have no path to the target (found by tracing).

    ## What it does
    Trace-only: with `--confirm`, every traced gradient call (`tape.gradient`,
    `tf.gradients`, `compute_gradients`, `minimize`) is checked, and a finding is created
    when trainable variables of the list have **no path at all** to the target: nothing
    computed from them reaches the loss. Typical causes are a leftover layer whose output
    is never used (seed 000's `tf.keras.layers.BatchNormalization()(layer_input,
    training=True)`), or differentiating one output of a model w.r.t. all its variables
    (seed 002: the gradients of an RNN state w.r.t. `tf.trainable_variables()` include the
    output dense layer, which comes after the state).

    This is distinct from a path that exists but is *blocked* by an op without a gradient
    (`argmax`, `round`, a cast to int...): that case is TFG104, whose evidence reads
    "blocked by op X at line N". Non-trainable variables without a path (batch-norm
    moving statistics) are TFG101's finding and are not repeated here.

    ## Why is this bad?
    Their gradients are `None`. Optimizers skip them (Keras only warns "Gradients do not
    exist for variables"), clipping code crashes on them, and the variables silently never
    train. Usually the model is not wired the way the author thinks.

    ## Example
    ```python
    def layer(x):
        h = tf.matmul(x, w) + b
        unused = tf.keras.layers.BatchNormalization()(x, training=True)  # output unused
        return tf.nn.relu(tf.layers.batch_normalization(h, training=True))
    grads = tf.gradients(loss, tf.trainable_variables())
    ```

    Use instead:
    ```python
    def layer(x):
        h = tf.matmul(x, w) + b
        return tf.nn.relu(tf.layers.batch_normalization(h, training=True))
    grads = tf.gradients(loss, tf.trainable_variables())
    ```
    or differentiate only w.r.t. the variables that feed the target (seed 002:
    `get_collection(TRAINABLE_VARIABLES, scope='layer_cell') + get_collection(..., scope='lstm_model')`).

    ## Confirmation
    The finding only exists when the trace observed it: the `gradient_call` event lists the
    variables in `disconnected` ("no path to the target"); the evidence names them and
    counts them against the whole list, and lists separately any variable whose path is
    blocked by an op (with the op and its line).
    """

    code = "TFG105"
    name = "disconnected-variables"
    severity = "warning"
    trace_only = True
    requires = ()

    # Trace-only: exempt from the example tests (see tests/test_rule_examples.py).
    VALID: list[Valid] = []
    INVALID: list[Invalid] = []

    @classmethod
    def _analyze(cls, ev: dict) -> tuple[int, str, str] | None:
        raw_disc = ev.get("disconnected")
        disconnected = [str(n) for n in raw_disc] if isinstance(raw_disc, list) else []
        if not disconnected:
            return None
        raw = ev.get("variables")
        variables = [v for v in raw if isinstance(v, dict)] if isinstance(raw, list) else []
        trainable = {str(v.get("name")): v.get("trainable", True) for v in variables}
        raw_blocked = ev.get("blocked")
        blocked = [b for b in raw_blocked if isinstance(b, dict)] if isinstance(raw_blocked, list) else []
        blocked_names = {str(b.get("variable")) for b in blocked}
        names = [n for n in disconnected if trainable.get(n, True) and n not in blocked_names]
        if not names:
            return None
        non_trainable = [n for n in disconnected if not trainable.get(n, True)]
        total = len(variables) or len(disconnected)
        api = ev.get("api") or "the gradient call"
        line = ev.get("line")
        if not isinstance(line, int):
            return None
        n_trainable = sum(1 for v in variables if v.get("trainable", True)) or total
        if len(names) >= n_trainable:
            message = (
                f"none of the {len(names)} trainable variable(s) passed to `{api}` has a path to the target, so "
                f"every gradient is None ({_names(names)}): the target does not depend on them, or it was "
                "computed where the tape did not record it (see TFG103); check what is differentiated"
            )
        else:
            message = (
                f"{len(names)} of {total} variable(s) passed to `{api}` have no path to the target, so their "
                f"gradients are None: {_names(names)}; nothing computed from them reaches the target (a layer "
                "whose output is unused, or another part of the model): remove them from the list or use their output"
            )
        evidence = f"no path from the target to {_names(names)} ({len(names)} of {total} variables)"
        if non_trainable:
            evidence += f"; {len(non_trainable)} non-trainable variable(s) without a path are left to TFG101"
        if blocked:
            parts = [
                f"`{b.get('variable')}` blocked by op `{b.get('op')}` ({b.get('op_type')}) at line {b.get('line')}"
                for b in blocked[:4]
            ]
            evidence += "; distinct from blocked paths (TFG104): " + ", ".join(parts)
        if ev.get("count", 1) and ev.get("count", 1) > 1:
            evidence += f"; the call ran {ev.get('count')} times"
        return line, message, evidence

    @classmethod
    def discover(cls, trace) -> list[tuple[int, str, str]]:
        out: list[tuple[int, str, str]] = []
        seen: set[int] = set()
        for ev in trace.events_of("gradient_call"):
            found = cls._analyze(ev)
            if found is not None and found[0] not in seen:
                seen.add(found[0])
                out.append(found)
        return out

    OBSERVES = ("gradient_call",)
    CONFIRMS = [
        Traced(
            (
                event(
                    "gradient_call",
                    10,
                    api="tape.gradient",
                    variables=[{"name": "d/kernel", "grad": "ok"}, {"name": "unused/kernel", "grad": "none"}],
                    disconnected=["unused/kernel"],
                    blocked=[],
                ),
            ),
            evidence="no path from the target to `unused/kernel` (1 of 2 variables)",
        )
    ]
    INCONCLUSIVE = [
        Traced(  # None, but blocked by an op: TFG104's finding, not a missing path
            (
                event(
                    "gradient_call",
                    10,
                    variables=[{"name": "q", "grad": "none"}],
                    disconnected=[],
                    blocked=[{"variable": "q", "op": "ArgMax", "op_type": "ArgMax", "line": 8}],
                ),
            ),
            evidence="no variable without a path",
        )
    ]

    @classmethod
    def confirm(cls, finding, trace) -> Outcome | None:
        line = (finding.data or {}).get("source_line", finding.line)
        for ev in trace.events_at("gradient_call", line):
            found = cls._analyze(ev)
            if found is not None:
                return confirmed(found[2])
        return inconclusive(f"the trace recorded no variable without a path to the target at line {line}")
