from __future__ import annotations

import re

import libcst as cst

from tflint_grad import tfapi
from tflint_grad.analysis import dotted, get_arg, mentions_update_ops, tf1_batch_norm_training
from tflint_grad.evidence import moving_text
from tflint_grad.finding import Edit, Fix
from tflint_grad.rule import Invalid, Outcome, Rule, Traced, Valid, confirmed, inconclusive, refuted
from tflint_grad.tracer.events import event


class UpdateOpsNotRun(Rule):
    """TF1 batch norm in training mode, but the train op does not run its UPDATE_OPS.

    ## What it does
    In a TF1 graph that uses `tf.layers.batch_normalization(training=...)` (or
    `tf.compat.v1.layers.batch_normalization`, `tf.contrib.layers.batch_norm` /
    `slim.batch_norm` without `updates_collections=None`) in training mode, flags the
    train op (`opt.minimize(...)` / `opt.apply_gradients(...)` of a TF1 optimizer) when
    it is not created under `with tf.control_dependencies(<the UPDATE_OPS collection>)`,
    is not grouped with the update ops (`tf.group(train_op, update_ops)`), and the
    update ops are not fetched in `sess.run`.

    ## Why is this bad?
    These layers do not update `moving_mean` / `moving_variance` themselves: they add
    the assign ops to the `tf.GraphKeys.UPDATE_OPS` collection, and in graph mode an op
    runs only if what `sess.run` fetches depends on it. Without the dependency the
    moving statistics keep their initial values (0 and 1) for the whole training, and
    the model gives wrong outputs as soon as it runs with `training=False`.

    ## Example
    ```python
    h = tf.layers.batch_normalization(h, training=is_training)
    loss = tf.losses.mean_squared_error(y, tf.layers.dense(h, 1))
    train_op = tf.train.AdamOptimizer(1e-3).minimize(loss)
    ```

    Use instead:
    ```python
    update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
    with tf.control_dependencies(update_ops):
        train_op = tf.train.AdamOptimizer(1e-3).minimize(loss)
    ```

    ## Fix safety
    Wrapping the train-op statement in
    `with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):` is
    unsafe: every fetch of the train op then also runs the moving-average updates
    (which is the point), and the collection is read at that line, so batch-norm layers
    created after it are still missed (see TFG205).

    ## Confirmation
    In the traced graph the moving-average assign ops are not ancestors of the train op
    (walking `op.inputs` and `op.control_inputs`) and are not fetched with it, and
    `moving_mean` is unchanged after the steps (statistics that could not be read, or that
    moved anyway, give `inconclusive`); `refuted` when the train op depends on them or they
    are fetched together.
    """

    code = "TFG202"
    name = "update-ops-not-run"
    severity = "warning"
    requires = ("batch_norm", "BatchNormalization")

    VALID = [
        # control dependencies on UPDATE_OPS through a name (seed 000's pattern)
        Valid("""
            import tensorflow as tf
            h = tf.layers.batch_normalization(x, training=True)
            loss = tf.reduce_mean(tf.square(h - y))
            update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
            with tf.control_dependencies(update_ops):
                opt = tf.train.MomentumOptimizer(0.01, 0.9)
                train_op = opt.minimize(loss)
        """),
        # control dependencies inline, compat.v1 spelling
        Valid("""
            import tensorflow as tf
            h = tf.compat.v1.layers.batch_normalization(x, training=is_training)
            loss = tf.reduce_mean(h)
            with tf.compat.v1.control_dependencies(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)):
                train_op = tf.compat.v1.train.AdamOptimizer().minimize(loss)
        """),
        # tf.group(train_op, update_ops)
        Valid("""
            import tensorflow as tf
            h = tf.layers.batch_normalization(x, training=phase)
            loss = tf.reduce_mean(h)
            update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
            minimize = tf.train.AdamOptimizer().minimize(loss)
            train_op = tf.group(minimize, update_ops)
        """),
        # fetching the update ops in sess.run (with the train op, or in their own run call)
        Valid("""
            import tensorflow as tf
            h = tf.layers.batch_normalization(x, training=True)
            train_op = tf.train.AdamOptimizer().minimize(tf.reduce_mean(h))
            bn_updates = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
            for step in range(100):
                sess.run(train_op, feed_dict=feed)
                sess.run(bn_updates, feed_dict=feed)
        """),
        Valid("""
            import tensorflow as tf
            h = tf.contrib.layers.batch_norm(x, is_training=True)
            loss = tf.reduce_mean(h)
            train_op = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
            extra_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
            with tf.Session() as sess:
                sess.run([train_op, extra_ops], feed_dict=feed)
        """),
        # updates_collections=None: the updates run in place
        Valid("""
            import tensorflow as tf
            slim = tf.contrib.slim
            h = slim.batch_norm(x, is_training=True, updates_collections=None)
            train_op = tf.train.AdamOptimizer().minimize(tf.reduce_mean(h))
        """),
        # slim.learning.create_train_op adds the update ops itself
        Valid("""
            import tensorflow as tf
            import tensorflow.contrib.slim as slim
            h = slim.batch_norm(x, is_training=True)
            train_op = slim.learning.create_train_op(tf.reduce_mean(h), tf.train.AdamOptimizer())
        """),
        # batch norm not in training mode (default training=False, literal False)
        Valid("""
            import tensorflow as tf
            a = tf.layers.batch_normalization(x)
            b = tf.layers.batch_normalization(a, training=False)
            c = tf.contrib.layers.batch_norm(b, is_training=False)
            train_op = tf.train.AdamOptimizer().minimize(tf.reduce_mean(c))
        """),
        # no train op in the file (seed 002)
        Valid("""
            import tensorflow as tf
            h = tf.layers.batch_normalization(x, training=phase_train, name="bn")
            grads = tf.gradients(h, tf.trainable_variables())
        """),
        # the train op is built in a function called under the control dependencies
        Valid("""
            import tensorflow as tf
            def make_train_op(loss):
                return tf.train.AdamOptimizer(1e-3).minimize(loss)
            h = tf.layers.batch_normalization(x, training=True)
            with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
                train_op = make_train_op(tf.reduce_mean(h))
        """),
        # batch norm hard-wired to training=True everywhere: the moving statistics are never read
        Valid("""
            import tensorflow as tf
            h = tf.layers.batch_normalization(tf.layers.dense(x, 8), training=True)
            h = tf.layers.batch_normalization(tf.layers.dense(h, 8), training=True)
            train_op = tf.train.AdamOptimizer().minimize(tf.reduce_mean(h))
        """),
        # a Keras optimizer in eager TF2 code is not a TF1 train op
        Valid("""
            import tensorflow as tf
            h = tf.compat.v1.layers.batch_normalization(x, training=True)
            opt = tf.keras.optimizers.Adam()
            opt.apply_gradients(zip(grads, variables))
        """),
    ]
    INVALID = [
        Invalid(
            """
            import tensorflow as tf
            x = tf.placeholder(tf.float32, [None, 4])
            is_training = tf.placeholder(tf.bool, [])
            h = tf.layers.batch_normalization(tf.layers.dense(x, 8), training=is_training)
            loss = tf.reduce_mean(tf.square(h))
            train_op = tf.train.AdamOptimizer(1e-3).minimize(loss)  # train
            """,
            line=6,
            message="UPDATE_OPS",
            fixed="""
            import tensorflow as tf
            x = tf.placeholder(tf.float32, [None, 4])
            is_training = tf.placeholder(tf.bool, [])
            h = tf.layers.batch_normalization(tf.layers.dense(x, 8), training=is_training)
            loss = tf.reduce_mean(tf.square(h))
            with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
                train_op = tf.train.AdamOptimizer(1e-3).minimize(loss)  # train
            """,
        ),
        # apply_gradients in a method, multi-line statement, the file's alias
        Invalid(
            """
            import tensorflow.compat.v1 as v1
            class Model:
                def __init__(self, x):
                    h = v1.layers.batch_normalization(x, training=True)
                    self.loss = v1.reduce_mean(h)
                    self.opt = v1.train.MomentumOptimizer(0.01, 0.9)
                    grads = self.opt.compute_gradients(self.loss)
                    self.train = self.opt.apply_gradients(
                        grads)
            """,
            line=8,
            message="apply_gradients",
            confidence="low",
            fixed="""
            import tensorflow.compat.v1 as v1
            class Model:
                def __init__(self, x):
                    h = v1.layers.batch_normalization(x, training=True)
                    self.loss = v1.reduce_mean(h)
                    self.opt = v1.train.MomentumOptimizer(0.01, 0.9)
                    grads = self.opt.compute_gradients(self.loss)
                    with v1.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
                        self.train = self.opt.apply_gradients(
                            grads)
            """,
        ),
        # contrib batch_norm (training by default); update ops collected but not used
        Invalid(
            """
            import tensorflow as tf
            h = tf.contrib.layers.batch_norm(x)
            update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
            train_op = tf.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_mean(h))
            with tf.Session() as sess:
                sess.run(train_op)
            """,
            line=4,
            message="`tf.contrib.layers.batch_norm` at line 2",
            confidence="low",
        ),
        # the TF1 class API: a BatchNormalization object built in __init__, called with a training flag
        Invalid(
            """
            import tensorflow.compat.v1 as tf
            class Net:
                def __init__(self, x, is_training):
                    self.bn = tf.layers.BatchNormalization()
                    h = self.bn(tf.layers.dense(x, 8), training=is_training)
                    self.loss = tf.reduce_mean(h)
                    self.train_op = tf.train.AdamOptimizer().minimize(self.loss)
            """,
            line=7,
            message="`self.bn` at line 5",
        ),
        # control dependencies on something else
        Invalid(
            """
            import tensorflow as tf
            h = tf.layers.batch_normalization(x, training=True)
            loss = tf.reduce_mean(h)
            with tf.control_dependencies([tf.assert_positive(loss)]):
                train_op = tf.train.AdamOptimizer().minimize(loss)
            """,
            line=5,
            confidence="low",
        ),
    ]

    def __init__(self, ctx, options=None) -> None:
        super().__init__(ctx, options)
        self._bns: list[cst.Call] | None = None
        self._consumers: list[tuple[cst.CSTNode, cst.CSTNode, bool]] | None = None
        self._methods = tfapi.names("graph", "train_methods")
        self._bn_lines: list[int] | None = None
        self._mentions: dict[tuple[int, str, int], bool] = {}

    # -- static ---------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if not isinstance(func, cst.Attribute) or func.attr.value not in self._methods:
            return
        if not self._tf1_optimizer(func.value, node):
            return
        bns = self._training_bns()
        if not bns:
            return
        if self._protected(node):
            return
        ctx = self.ctx
        first = bns[0]
        bn_name = ctx.call_name(first) or ctx.code(first.func)
        if self._bn_lines is None:
            self._bn_lines = sorted({ctx.line(b) for b in bns})
        lines = self._bn_lines
        more = f" (and {len(bns) - 1} more)" if len(bns) > 1 else ""
        method = func.attr.value
        message = (
            f"the train op `{method}(...)` does not run the batch-norm update ops: `{bn_name}` at line {lines[0]}{more} "
            "runs in training mode and puts its moving_mean/moving_variance updates in the UPDATE_OPS collection, "
            "which graph mode runs only if the train op depends on them (or they are fetched with it); as written the "
            "moving statistics never change and inference uses their initial values; create the train op under "
            "`with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):`"
        )
        hard_wired = all(self._always_training(bn) for bn in bns)
        if hard_wired:
            message += (
                "; assumed the moving statistics are used for inference elsewhere: every batch norm here is "
                "hard-wired to training mode, so this script never reads them"
            )
        self.report(
            node,
            message,
            fix=self._fix(node, first),
            data={"call_line": ctx.line(node), "end_line": ctx.range(node)[2], "bn_lines": lines},
            confidence="low" if hard_wired else "high",
        )

    def _always_training(self, bn: cst.Call) -> bool:
        """The batch norm's training flag is the literal True (or a default of True): it never
        runs in inference mode, so its moving statistics are never read in this graph."""
        arg = get_arg(bn, "training") or get_arg(bn, "is_training")
        if arg is None:
            return not any(a.star == "**" for a in bn.args)
        v = arg.value
        return isinstance(v, cst.Name) and v.value == "True"

    def _training_bns(self) -> list[cst.Call]:
        if self._bns is None:
            ctx = self.ctx
            self._bns = [n for n in ctx.nodes_of(cst.Call) if tf1_batch_norm_training(ctx, n)]
        return self._bns

    def _tf1_optimizer(self, receiver: cst.BaseExpression, at: cst.CSTNode) -> bool:
        ctx = self.ctx
        v = ctx.value_of(receiver, at)
        if isinstance(v, cst.Call):
            qn = ctx.call_name(v)
            if qn is not None:
                return qn.startswith("tf.")
            return ctx.is_tf1
        if isinstance(v, (cst.Name, cst.Attribute)) and ctx.qualname(v) is not None:
            return False
        return ctx.is_tf1

    # -- what counts as running the update ops -------------------------------------------
    def _is_control_deps(self, expr: cst.BaseExpression) -> bool:
        if not isinstance(expr, cst.Call):
            return False
        if self.ctx.call_name(expr) in tfapi.names("graph", "control_dependencies"):
            return True
        return isinstance(expr.func, cst.Attribute) and expr.func.attr.value == "control_dependencies"

    def _under_update_deps(self, node: cst.CSTNode) -> bool:
        for a in self.ctx.ancestors(node):
            if isinstance(a, cst.With):
                for item in a.items:
                    if self._is_control_deps(item.item) and mentions_update_ops(self.ctx, item.item):
                        return True
        return False

    def _function_protected(self, fn: cst.FunctionDef, seen: set[int]) -> bool:
        """Every way ``fn`` is called runs under UPDATE_OPS control dependencies (one found is enough)."""
        if id(fn) in seen or len(seen) > 4:
            return False
        seen.add(id(fn))
        for n in self.ctx.calls_named(fn.name.value):
            if self._under_update_deps(n):
                return True
            outer = next((a for a in self.ctx.ancestors(n) if isinstance(a, cst.FunctionDef)), None)
            if outer is not None and self._function_protected(outer, seen):
                return True
        return False

    def _consumer_nodes(self) -> list[tuple[cst.CSTNode, cst.CSTNode, bool]]:
        """(where the train op may be referenced, where the update ops may be mentioned, is a
        `sess.run`: fetching the update ops in any run call runs them)."""
        if self._consumers is None:
            ctx = self.ctx
            group = tfapi.names("graph", "group")
            out: list[tuple[cst.CSTNode, cst.CSTNode, bool]] = []
            for n in ctx.nodes:
                t = type(n)
                if t is cst.Call:
                    if ctx.call_name(n) in group:
                        out.append((n, n, False))
                    elif isinstance(n.func, cst.Attribute) and n.func.attr.value == "run":
                        out.append((n, n, True))
                elif t is cst.With:
                    for item in n.items:
                        if self._is_control_deps(item.item):
                            out.append((item.item, n, False))
            self._consumers = out
        return self._consumers

    def _protected(self, call: cst.Call) -> bool:
        ctx = self.ctx
        if self._under_update_deps(call):
            return True
        fn = next((a for a in ctx.ancestors(call) if isinstance(a, cst.FunctionDef)), None)
        if fn is not None and self._function_protected(fn, set()):
            return True
        keys: list[str] = []
        stmt = ctx.statement_of(call)
        if isinstance(stmt, (cst.Assign, cst.AnnAssign)) and stmt.value is call:
            targets = [t.target for t in stmt.targets] if isinstance(stmt, cst.Assign) else [stmt.target]
            for t in targets:
                if isinstance(t, cst.Name):
                    keys.append(t.value)
                elif isinstance(t, cst.Attribute):
                    keys.append("." + t.attr.value)
        for where, body, is_run in self._consumer_nodes():
            if not (is_run or ctx.contains(where, call) or any(self._references(where, k) for k in keys)):
                continue
            if mentions_update_ops(ctx, body):
                return True
        return False

    def _references(self, node: cst.CSTNode, key: str, depth: int = 2) -> bool:
        """Whether ``node`` mentions ``key`` (a name, or ``.attr``), directly or through the
        names it reads (once per node: every train op asks about every consumer)."""
        known = self._mentions.get((id(node), key, depth))
        if known is None:
            known = self._mentions[(id(node), key, depth)] = self._find_reference(node, key, depth)
        return known

    def _find_reference(self, node: cst.CSTNode, key: str, depth: int) -> bool:
        ctx = self.ctx
        for n in ctx.descendants(node):
            t = type(n)
            if key.startswith("."):
                if t is cst.Attribute and n.attr.value == key[1:]:
                    return True
            elif t is cst.Name and n.value == key:
                p = ctx.parents.get(n)
                if not (isinstance(p, cst.Attribute) and p.attr is n):
                    return True
            if depth > 0 and t is cst.Name:
                b = ctx.binding(n)
                if (
                    b is not None
                    and b.kind == "assign"
                    and b.value is not None
                    and b.value in ctx.index
                    and not ctx.contains(b.value, n)
                ):
                    if self._references(b.value, key, depth - 1):
                        return True
        return False

    # -- fix --------------------------------------------------------------------------
    def _fix(self, call: cst.Call, bn: cst.Call) -> Fix | None:
        ctx = self.ctx
        stmt = ctx.statement_of(call)
        line_node = ctx.parent(stmt)
        if not isinstance(stmt, cst.BaseSmallStatement) or not isinstance(line_node, cst.SimpleStatementLine):
            return None
        if len(line_node.body) != 1 or not isinstance(ctx.parent(line_node), (cst.IndentedBlock, cst.Module)):
            return None
        prefix = self._tf_prefix(bn, call)
        if prefix is None:
            return None
        l0, c0, l1, c1 = ctx.range(stmt)
        lines = ctx.source_lines
        if not (1 <= l0 <= l1 <= len(lines)):
            return None
        indent = lines[l0 - 1][: c0 - 1]
        if indent.strip():
            return None
        if l0 == l1:
            text = lines[l0 - 1][c0 - 1 : c1 - 1]
        else:
            text = lines[l0 - 1][c0 - 1 :] + "".join(lines[l0 : l1 - 1]) + lines[l1 - 1][: c1 - 1]
        unit = ctx.module.default_indent
        if '"""' not in text and "'''" not in text:
            text = re.sub(r"\n(?=[^\n])", "\n" + unit, text)
        new = (
            f"with {prefix}.control_dependencies({prefix}.get_collection({prefix}.GraphKeys.UPDATE_OPS)):\n"
            f"{indent}{unit}{text}"
        )
        return Fix("Run the train op under control dependencies on UPDATE_OPS", (Edit(l0, c0, l1, c1, new),), "unsafe")

    def _tf_prefix(self, bn: cst.Call, call: cst.Call) -> str | None:
        """How this file spells the TF1 API: `tf`, `tf.compat.v1`, `v1`..."""
        ctx = self.ctx
        for expr in (bn.func, call.func):
            d = dotted(expr)
            if d and ".compat.v1." in d:
                return d[: d.index(".compat.v1.") + len(".compat.v1")]
        best = None
        for local, full in ctx.imports.items():
            if tfapi.canonical(full) == "tf":
                if local == "tf":
                    return local
                best = best or local
        return best

    # -- confirmation -------------------------------------------------------------------
    OBSERVES = ("update_ops", "moving_stats")
    CONFIRMS = [
        Traced(
            (
                event(
                    "update_ops",
                    10,
                    train_op="Adam",
                    update_ops=["bn/AssignMovingAvg"],
                    ancestors=False,
                    fetched_together=False,
                    fetched=True,
                    api="minimize",
                ),
                event(
                    "moving_stats",
                    4,
                    layer="bn",
                    before={"moving_mean": [0.0]},
                    after={"moving_mean": [0.0]},
                    changed=False,
                ),
            ),
            evidence="does not depend on the 1 update op(s)",
            data={"call_line": 10, "end_line": 10},
        )
    ]
    REFUTES = [
        Traced(
            (
                event(
                    "update_ops",
                    10,
                    train_op="Adam",
                    update_ops=["bn/AssignMovingAvg"],
                    ancestors=True,
                    fetched_together=False,
                    fetched=True,
                    api="minimize",
                ),
            ),
            evidence="are ancestors of it",
            data={"call_line": 10, "end_line": 10},
        )
    ]
    INCONCLUSIVE = [
        Traced(  # not wired, but the statistics move: something else runs them
            (
                event(
                    "update_ops",
                    10,
                    train_op="Adam",
                    update_ops=["bn/AssignMovingAvg"],
                    ancestors=False,
                    fetched_together=False,
                    fetched=True,
                    api="minimize",
                ),
                event(
                    "moving_stats",
                    4,
                    layer="bn",
                    before={"moving_mean": [0.0]},
                    after={"moving_mean": [0.2]},
                    changed=True,
                ),
            ),
            evidence="something else runs the updates",
            data={"call_line": 10, "end_line": 10},
        ),
        Traced(  # not wired, but the statistics could not be read: the consequence is unseen
            (
                event(
                    "update_ops",
                    10,
                    train_op="Adam",
                    update_ops=["bn/AssignMovingAvg"],
                    ancestors=False,
                    fetched_together=False,
                    fetched=True,
                    api="minimize",
                ),
            ),
            evidence="could not be read",
            data={"call_line": 10, "end_line": 10},
        ),
    ]

    @classmethod
    def confirm(cls, finding, trace) -> Outcome | None:
        line = finding.data.get("call_line", finding.line)
        end = finding.data.get("end_line", line)
        events = trace.events_at("update_ops", line, end)
        if not events:
            return inconclusive(f"no train op built at line {line} was fetched during the trace")
        bad = [e for e in events if not e.get("ancestors") and not e.get("fetched_together")]
        if not bad:
            e = events[0]
            how = "fetched together with it" if e.get("fetched_together") else "ancestors of it"
            return refuted(f"the update ops of train op `{e.get('train_op')}` are {how}")
        e = bad[0]
        ops = e.get("update_ops") or []
        if not ops:
            return inconclusive(f"train op `{e.get('train_op')}` had no update ops to run")
        stats = trace.events_of("moving_stats")
        evidence = (
            f"train op `{e.get('train_op')}` (line {e.get('line')}) does not depend on the {len(ops)} update op(s) "
            f"{', '.join(map(str, ops[:6]))} and they are not fetched with it"
        )
        if stats:
            evidence += f"; after {trace.steps} step(s): " + "; ".join(moving_text(s) for s in stats[:6])
        if not stats:
            return inconclusive(evidence + " (the moving statistics could not be read: their staying put is unseen)")
        if all(s.get("changed") for s in stats):
            return inconclusive(evidence + " (yet the moving statistics changed: something else runs the updates)")
        return confirmed(evidence)
