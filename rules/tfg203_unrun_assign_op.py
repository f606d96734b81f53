from __future__ import annotations

import re

import libcst as cst

from tflint_grad import tfapi
from tflint_grad.analysis import dotted
from tflint_grad.analysis.modes import mode_at
from tflint_grad.rule import Invalid, Outcome, Rule, Traced, Valid, confirmed, inconclusive, refuted
from tflint_grad.tracer.events import event

_STATS = re.compile(r"mean|var|moving|pop|running|avg|average|ema|stat", re.IGNORECASE)
_CONTAINERS = (
    cst.Element,
    cst.StarredElement,
    cst.List,
    cst.Tuple,
    cst.Set,
    cst.ListComp,
    cst.SetComp,
    cst.GeneratorExp,
)


class UnrunAssignOp(Rule):
    """A TF1 assign op (e.g. a running-statistics update) is created but never run.

    ## What it does
    In graph-mode (TF1) code, flags `tf.assign` / `tf.assign_add` / `tf.assign_sub` /
    `tf.scatter_update` and `var.assign(...)` / `var.assign_add(...)` /
    `var.assign_sub(...)` on a graph variable when the op they return is never used:
    the call is a bare expression statement, or its result is bound to a name (or
    `self.attr`) that is never read anywhere: not fetched, not in
    `tf.control_dependencies`, not grouped, not returned, not appended to a list.

    ## Why is this bad?
    In graph mode `tf.assign(...)` does not assign anything: it adds an op to the
    graph, and the op runs only when `sess.run` fetches it or something that depends
    on it. A hand-written batch norm whose `pop_mean`/`pop_var` updates are created but
    never run keeps its initial population statistics for ever, so testing mode
    normalizes with the wrong values (seed 003).

    ## Example
    ```python
    train_mean = tf.assign(pop_mean, pop_mean * decay + batch_mean * (1 - decay))
    train_var = tf.assign(pop_var, pop_var * decay + batch_var * (1 - decay))
    output = (x - batch_mean) / tf.sqrt(batch_var + eps)
    ```

    Use instead:
    ```python
    train_mean = tf.assign(pop_mean, pop_mean * decay + batch_mean * (1 - decay))
    train_var = tf.assign(pop_var, pop_var * decay + batch_var * (1 - decay))
    with tf.control_dependencies([train_mean, train_var]):
        output = (x - batch_mean) / tf.sqrt(batch_var + eps)
    ```

    ## Confirmation
    The traced graph's assign op created at the flagged line is not an ancestor of
    anything the script ran (`ran: false`); the evidence quotes the target's value before
    the first and after the last traced step ("`self.pop_mean` stays [0.0] after 5 step(s)").
    `refuted` when it ran.
    """

    code = "TFG203"
    name = "unrun-assign-op"
    severity = "warning"
    requires = ("assign",)

    VALID = [
        # used in control_dependencies (seed 003 fixed)
        Valid("""
            import tensorflow as tf
            class BatchNorm:
                def __init__(self, inputs, size, is_training, decay=0.99):
                    self.pop_mean = tf.Variable(tf.zeros([size]), trainable=False)
                    self.batch_mean, self.batch_var = tf.nn.moments(inputs, [0])
                    self.train_mean = tf.assign(self.pop_mean, self.pop_mean * decay + self.batch_mean * (1 - decay))
                    def training():
                        with tf.control_dependencies([self.train_mean]):
                            return tf.identity(inputs - self.batch_mean)
                    self.output = tf.cond(is_training, training, lambda: inputs - self.pop_mean)
            sess = tf.Session()
        """),
        # fetched in sess.run, grouped, returned, appended
        Valid("""
            import tensorflow as tf
            x = tf.placeholder(tf.float32, [None])
            counter = tf.Variable(0, trainable=False)
            step = tf.get_variable("step", [], trainable=False)
            inc = tf.assign_add(counter, 1)
            ops = []
            ops.append(tf.assign(step, step + 1))
            def reset(v):
                return tf.assign(v, tf.zeros_like(v))
            train = tf.group(tf.assign_sub(step, 1), inc)
            with tf.Session() as sess:
                sess.run([train, ops])
                sess.run(tf.assign(counter, 0))
        """),
        # var.assign in a list bound to a name that is fetched
        Valid("""
            import tensorflow as tf
            src = [tf.get_variable("a", [2]), tf.get_variable("b", [2])]
            dst = [tf.get_variable("c", [2]), tf.get_variable("d", [2])]
            sync = [d.assign(s) for d, s in zip(dst, src)]
            with tf.Session() as sess:
                sess.run(sync)
        """),
        # eager TF2 code: assignments run immediately
        Valid("""
            import tensorflow as tf
            v = tf.Variable(0.0)
            v.assign(3.0)
            moving_mean = tf.Variable(tf.zeros([4]))
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(v * v)
            moving_mean.assign(moving_mean * 0.9)
        """),
        # TF1 eager mode (`tf.enable_eager_execution()`): the assignment runs at once
        Valid("""
            import tensorflow as tf
            tf.enable_eager_execution()
            x = tf.Variable(10.)
            x.assign(2.)
            global_step = tf.train.get_or_create_global_step()
            global_step.assign_add(1)
        """),
        # TF2 code next to TF1 graphs built in `with graph.as_default()` blocks: only those are graphs
        Valid("""
            import tensorflow as tf
            graph = tf.Graph()
            with graph.as_default(), tf.compat.v1.Session(graph=graph) as sess:
                inputs = tf.ones((1, 4))
                sess.run(tf.compat.v1.global_variables_initializer())
            model = tf.keras.Sequential([tf.keras.layers.Dense(2)])
            for var in model.variables:
                var.assign(tf.ones_like(var) * 0.001)
        """),
        # inside a tf.function: automatic control dependencies run it
        Valid("""
            import tensorflow.compat.v1 as tf
            counter = tf.Variable(0)
            @tf.function
            def step():
                counter.assign_add(1)
        """),
        # an `assign` method of something that is not a variable
        Valid("""
            import tensorflow as tf
            x = tf.placeholder(tf.float32)
            sess = tf.Session()
            config.assign("lr", 0.1)
        """),
    ]
    INVALID = [
        # TF1 graph calls through compat.v1 but no disable_v2_behavior(): graph mode assumed (low)
        Invalid(
            """
            import tensorflow.compat.v1 as tf
            counter = tf.Variable(0)
            counter.assign_add(1)
            with tf.Session() as sess:
                x = tf.placeholder(tf.float32)
            """,
            line=3,
            message="assumed graph mode",
            confidence="low",
        ),
        # seed 003
        Invalid(
            """
            import tensorflow as tf
            decay = 0.99
            class batch_norm:
                def __init__(self, inputs, size, is_training, sess):
                    self.sess = sess
                    self.scale = tf.Variable(tf.random_uniform([size], 1., 1.))
                    self.pop_mean = tf.Variable(tf.random_uniform([size], 0., 0.))
                    self.pop_var = tf.Variable(tf.random_uniform([size], 1., 1.))
                    self.batch_mean, self.batch_var = tf.nn.moments(inputs, [0])
                    self.train_mean = tf.assign(self.pop_mean, self.pop_mean * decay + self.batch_mean * (1 - decay))
                    self.train_var = tf.assign(self.pop_var, self.pop_var * decay + self.batch_var * (1 - decay))
                    def training():
                        return (inputs - self.batch_mean) / tf.sqrt(self.batch_var + 1e-7) * self.scale
                    def testing():
                        return (inputs - self.pop_mean) / tf.sqrt(self.pop_var + 1e-7) * self.scale
                    self.output = tf.cond(is_training, training, testing)
            sess = tf.Session()
            """,
            line=10,
            message="running statistic `self.pop_mean`",
            count=2,
        ),
        # a discarded expression statement
        Invalid(
            """
            import tensorflow.compat.v1 as tf
            tf.disable_v2_behavior()
            moving_avg = tf.get_variable("moving_avg", [8], trainable=False)
            x = tf.placeholder(tf.float32, [None, 8])
            moving_avg.assign(0.9 * moving_avg + 0.1 * tf.reduce_mean(x, 0))
            y = x - moving_avg
            """,
            line=5,
            message="discarded",
        ),
        # bound to a name that is never read
        Invalid(
            """
            import tensorflow as tf
            global_step = tf.train.get_or_create_global_step()
            x = tf.placeholder(tf.float32)
            increment = tf.assign_add(global_step, 1)
            with tf.Session() as sess:
                sess.run(x, feed_dict={x: 1.0})
            """,
            line=4,
            message="`increment`",
        ),
    ]

    def __init__(self, ctx, options=None) -> None:
        super().__init__(ctx, options)
        self._name_loads: dict[str, int] | None = None
        self._attr_loads: dict[str, int] | None = None
        self._functions = tfapi.names("graph", "assign_functions")
        self._methods = tfapi.names("graph", "assign_methods")

    # -- static ---------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        ctx = self.ctx
        func = node.func
        target: cst.BaseExpression | None = None
        if isinstance(func, cst.Attribute) and func.attr.value in self._methods:
            if ctx.qualname(func) is not None:
                if ctx.qualname(func) not in self._functions:
                    return
                arg = node.args[0] if node.args else None
                target = arg.value if arg is not None else None
            else:
                target = func.value
                if not self._is_variable(target, node):
                    return
        elif isinstance(func, (cst.Name, cst.Attribute)) and ctx.call_name(node) in self._functions:
            target = node.args[0].value if node.args else None
        else:
            return
        mode = mode_at(ctx, node)
        if mode not in ("graph", "unknown"):
            return  # eager code (TF2, enable_eager_execution) assigns at once; tf.function runs stateful ops
        unused = self._unused(node)
        if unused is None:
            return
        how, bound = unused
        target_text = (dotted(target) or ctx.code(target)) if target is not None else "the variable"
        op_text = ctx.code(func)
        stats = bool(_STATS.search(target_text) or (bound and _STATS.search(bound)))
        where = "its result is discarded" if how == "discarded" else f"it is bound to `{bound}`, which is never read"
        if stats:
            message = (
                f"`{op_text}(...)` creates the op that updates the running statistic `{target_text}`, but the op never runs: "
                f"{where} (not fetched, grouped or made a control dependency); in graph mode `{target_text}` then keeps its "
                "initial value and inference uses the wrong statistics; run it, e.g. build the training-mode output under "
                "`with tf.control_dependencies([...]):` or group it with the train op"
            )
        else:
            message = (
                f"`{op_text}(...)` creates an assign op on `{target_text}` that never runs: {where} "
                "(not fetched, grouped or made a control dependency); in graph mode an op runs only when something "
                "fetched depends on it: fetch it, group it with the train op or use `tf.control_dependencies`"
            )
        if mode == "unknown":
            message += (
                "; assumed graph mode: the script uses TF1 graph calls through `tf.compat.v1` but never calls "
                "`disable_v2_behavior()`, so under TF2 this line may run eagerly"
            )
        self.report(
            node,
            message,
            data={"call_line": ctx.line(node), "end_line": ctx.range(node)[2], "target": target_text},
            confidence="high" if mode == "graph" else "low",
        )

    def _is_variable(self, expr: cst.BaseExpression, at: cst.CSTNode) -> bool:
        ctx = self.ctx
        v = ctx.value_of(expr, at)
        if isinstance(v, cst.Call):
            qn = ctx.call_name(v)
            return qn in tfapi.names("graph", "variable_constructors") or qn in tfapi.names("graph", "variable_getters")
        if isinstance(v, (cst.Name, cst.Attribute)) and ctx.qualname(v) is None:
            b = ctx.binding(v, at) if v is expr else None
            if b is not None and b.kind in ("def", "class", "import"):
                return False
            name = dotted(v)
            return bool(name and _STATS.search(name.split(".")[-1]))
        return False

    def _unused(self, call: cst.Call) -> tuple[str, str | None] | None:
        """("discarded", None) / ("unread", name) when the op's value goes nowhere, else None."""
        ctx = self.ctx
        cur: cst.CSTNode = call
        parent = ctx.parent(cur)
        while isinstance(parent, _CONTAINERS):
            if isinstance(parent, (cst.ListComp, cst.SetComp, cst.GeneratorExp)) and parent.elt is not cur:
                return None
            cur, parent = parent, ctx.parent(parent)
        if isinstance(parent, cst.Expr):
            return "discarded", None
        if isinstance(parent, (cst.Assign, cst.AnnAssign)) and parent.value is cur:
            targets = [t.target for t in parent.targets] if isinstance(parent, cst.Assign) else [parent.target]
            names = []
            for t in targets:
                name = self._unread_target(t, cur, call)
                if name is None:
                    return None
                names.append(name)
            return ("unread", names[0]) if names else None
        return None

    def _unread_target(self, target: cst.BaseExpression, value: cst.CSTNode, call: cst.Call) -> str | None:
        """The target's name if nothing ever reads it, else None."""
        if isinstance(target, (cst.Tuple, cst.List)):
            if not isinstance(value, (cst.Tuple, cst.List)) or len(value.elements) != len(target.elements):
                return None
            for t_el, v_el in zip(target.elements, value.elements):
                if self.ctx.contains(v_el, call):
                    return self._unread_target(t_el.value, v_el.value, call)
            return None
        self._count_loads()
        if isinstance(target, cst.Name):
            return target.value if not self._name_loads.get(target.value) else None  # type: ignore[union-attr]
        if isinstance(target, cst.Attribute):
            return (dotted(target) or target.attr.value) if not self._attr_loads.get(target.attr.value) else None  # type: ignore[union-attr]
        return None

    def _count_loads(self) -> None:
        if self._name_loads is not None:
            return
        ctx = self.ctx
        names: dict[str, int] = {}
        attrs: dict[str, int] = {}
        for n in ctx.nodes:
            t = type(n)
            if t is cst.Name:
                p = ctx.parents.get(n)
                if isinstance(p, cst.Attribute) and p.attr is n:
                    continue
                if isinstance(p, cst.Arg) and p.keyword is n:
                    continue
                if isinstance(p, (cst.FunctionDef, cst.ClassDef, cst.Param, cst.ImportAlias, cst.AsName)):
                    continue
                if ctx.is_store(n):
                    continue
                names[n.value] = names.get(n.value, 0) + 1
            elif t is cst.Attribute:
                if ctx.is_store(n):
                    continue
                attrs[n.attr.value] = attrs.get(n.attr.value, 0) + 1
            elif t is cst.SimpleString:
                # getattr(self, "train_mean") / "train_mean" fetched by name
                v = n.value.strip("'\"")
                if v.isidentifier():
                    attrs[v] = attrs.get(v, 0) + 1
                    names[v] = names.get(v, 0) + 1
        self._name_loads, self._attr_loads = names, attrs

    # -- confirmation -------------------------------------------------------------------
    OBSERVES = ("assign_op",)
    CONFIRMS = [
        Traced(
            (
                event(
                    "assign_op",
                    10,
                    op="Assign",
                    op_type="AssignVariableOp",
                    target="pop_mean",
                    ran=False,
                    moving=True,
                    before=[0.0],
                    after=[0.0],
                ),
            ),
            evidence="`self.pop_mean` stays [0.0] after 5 step(s)",
            data={"call_line": 10, "end_line": 10, "target": "self.pop_mean"},
        )
    ]
    REFUTES = [
        Traced(
            (event("assign_op", 10, op="Assign", op_type="AssignVariableOp", target="pop_mean", ran=True),),
            evidence="ran (it is an ancestor of a fetched op)",
            data={"call_line": 10, "end_line": 10},
        )
    ]
    INCONCLUSIVE = [
        Traced((), evidence="no assign op created at line 10 was recorded", data={"call_line": 10, "end_line": 10}),
        Traced(  # the script never ran its session: nothing was fetched, so "never ran" shows nothing
            (event("assign_op", 10, op="Assign", op_type="AssignVariableOp", target="pop_mean", ran=False),),
            evidence="no train step",
            steps=0,
            data={"call_line": 10, "end_line": 10},
        ),
    ]

    @classmethod
    def confirm(cls, finding, trace) -> Outcome | None:
        line = finding.data.get("call_line", finding.line)
        end = finding.data.get("end_line", line)
        events = trace.events_at("assign_op", line, end)
        if not events:
            return inconclusive(f"no assign op created at line {line} was recorded")
        ran = [e for e in events if e.get("ran")]
        if ran:
            e = ran[0]
            return refuted(f"assign op `{e.get('op')}` on `{e.get('target')}` ran (it is an ancestor of a fetched op)")
        if not trace.steps:
            return inconclusive(f"the assign op at line {line} never ran, but no train step ran either (no train step)")
        desc = ", ".join(f"`{e.get('op')}` (target `{e.get('target')}`)" for e in events[:4])
        values = []
        for e in events[:4]:
            before, after = e.get("before"), e.get("after")
            if not (isinstance(before, list) and isinstance(after, list) and before):
                continue
            name = finding.data.get("target") if len(events) == 1 and finding.data.get("target") else e.get("target")
            if before == after:
                text = f"`{name}` stays {_values(before)} after {trace.steps} step(s)"
            else:
                text = f"`{name}` went from {_values(before)} to {_values(after)} (other ops update it)"
            if text not in values:
                values.append(text)
        return confirmed(
            f"assign op(s) {desc} created at line {line} never ran: none is an ancestor of anything the script fetched"
            + (f"; {'; '.join(values)}" if values else f" in {trace.steps} step(s)")
        )


def _values(vals: list) -> str:
    """[0.0] / [0.1, 0.2, 0.3, 0.4, ...]: the first values the probes read."""
    shown = []
    for v in vals[:4]:
        try:
            shown.append(repr(round(float(v), 6)))
        except (TypeError, ValueError):
            shown.append(str(v))
    return "[" + ", ".join(shown) + (", ...]" if len(vals) > 4 else "]")
