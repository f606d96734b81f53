from __future__ import annotations

import re

import libcst as cst

from tflint_grad import tfapi
from tflint_grad.analysis import dependency_names, dotted, get_arg
from tflint_grad.analysis.targets import gradient_targets
from tflint_grad.rule import Invalid, Outcome, Rule, Traced, Valid, confirmed, inconclusive, refuted
from tflint_grad.tracer.events import event

_GRADISH = re.compile(r"grad|(^|_)gvs?($|_)|(^|_)gv\d*($|_)", re.IGNORECASE)
_PASS_THROUGH = ("zip", "enumerate", "list", "tuple", "reversed", "sorted", "iter")
_NO_PARENS = (
    cst.Element,
    cst.Arg,
    cst.Assign,
    cst.AnnAssign,
    cst.Return,
    cst.Lambda,
    cst.ListComp,
    cst.GeneratorExp,
    cst.SetComp,
)


# Gradient requests that return gradients (or pairs), by kind -> the API name messages use.
_RETURNS_GRADIENTS = {
    "tape": "tape.gradient",
    "tf_gradients": "tf.gradients",
    "compute_gradients": "compute_gradients",
    "get_gradients": "get_gradients",
}


class ClipNoneGradient(Rule):
    """Per-tensor clipping over a gradient list that can hold `None`.

    ## What it does
    Flags `tf.clip_by_value`, `tf.clip_by_norm` and `tf.clip_by_average_norm` applied to each
    gradient of a list (a list comprehension, a generator expression, a `for` loop or
    `map(lambda g: ...)` over `opt.compute_gradients(...)`, `tape.gradient(...)`,
    `tf.gradients(...)`, or `zip(grads, variables)`) with no `g is not None` guard: no
    comprehension `if`, conditional expression or `if` statement testing the gradient
    against `None`.

    Precision decision: when the gradient call's variable list is an explicit list of
    variables that all flow into the loss (each name appears in the loss's dependency chain
    through the file's assignments, as in seed 001 where `[W, b, W1, b1, W2, b2]` all feed
    `distance`), no gradient can be None and the clipping is not flagged. It is flagged when
    the list can hold variables that do not feed the loss: `model.trainable_variables`,
    `tf.trainable_variables()`, a collection, `compute_gradients` without `var_list`, a list
    the linter cannot read, an explicit list with a variable outside the loss's dependency
    chain, or a gradient list received from elsewhere (a function parameter named like
    `grads`, which is assumed to hold gradients; the message says so). Only the explicit list
    with a variable outside the loss's dependency chain shows the premise (confidence
    `high`); the other cases assume it and are `low` candidates, hidden by default.

    Not a finding: a None guard, `tf.clip_by_global_norm` (it accepts None), and a list
    filtered or rewritten earlier (`[(g, v) for g, v in gvs if g is not None]`).

    ## Why is this bad?
    A variable that does not feed the loss (an unused layer, a frozen branch, another
    network's variables in `tf.trainable_variables()`) gets a `None` gradient, and the
    clip functions raise on `None` ("None values not supported"). The usual workaround,
    deleting the clipping, hides the real problem; the guard keeps the clipping and lets
    `apply_gradients` skip the variables without gradient.

    ## Example
    ```python
    grads_and_vars = opt.compute_gradients(loss)
    clipped = [(tf.clip_by_value(g, -1., 1.), v) for g, v in grads_and_vars]
    train_op = opt.apply_gradients(clipped)
    ```

    Use instead:
    ```python
    clipped = [(tf.clip_by_value(g, -1., 1.), v) for g, v in grads_and_vars if g is not None]
    ```

    ## Fix safety
    Unsafe: it changes which variables are updated (none of those whose gradient is None
    were updatable anyway). Over `(gradient, variable)` pairs the fix filters the pairs
    (`... if g is not None`); over a gradient list, in a loop or in `map`, it keeps the
    positions and clips only the non-None gradients
    (`tf.clip_by_norm(g, 5.0) if g is not None else None`), so a later
    `zip(clipped, variables)` stays aligned.

    ## Confirmation
    `confirmed` when a `None` gradient reaches the clip call during the traced steps (a
    `clip_none` event at its line, or a None gradient at the gradient call it iterates and the
    clip line raised); `refuted` when the clip line ran and every gradient of that call was
    non-None over the traced steps.
    """

    code = "TFG501"
    name = "clip-none-gradient"
    severity = "warning"
    requires = ("clip_by",)

    VALID = [
        # Seed 001: every variable of the explicit list feeds `distance`.
        Valid("""
            import tensorflow as tf
            initia = tf.random_normal_initializer(0, 1e-3)
            I = tf.placeholder(tf.float32, shape=[None, 1])
            W = tf.get_variable('W', shape=[1, 16], initializer=initia)
            b = tf.get_variable('b', shape=[16], initializer=initia)
            O = tf.nn.relu(tf.matmul(I, W) + b)
            W2 = tf.get_variable('W2', shape=[16, 1], initializer=initia)
            b2 = tf.get_variable('b2', shape=[1], initializer=initia)
            O2 = tf.matmul(O, W2) + b2
            estimate0 = 2.0 * tf.gather_nd(O2, [[0, 0]])
            distance = tf.reduce_sum(tf.square(tf.gather_nd(I, [[0, 0]]) - estimate0))
            opt = tf.train.GradientDescentOptimizer(1e-3)
            grads_and_vars = opt.compute_gradients(distance, [W, b,
                W2, b2])
            clipped_grads_and_vars = [(tf.clip_by_value(g, -4.5, 4.5), v) for g, v in grads_and_vars]
            train_op = opt.apply_gradients(clipped_grads_and_vars)
        """),
        # None guards: comprehension `if`, conditional expression, `if` statement, `continue`.
        Valid("""
            import tensorflow as tf
            gvs = opt.compute_gradients(loss)
            a = [(tf.clip_by_value(g, -1., 1.), v) for g, v in gvs if g is not None]
            b = [(tf.clip_by_norm(gv[0], 5.), gv[1]) for gv in gvs if gv[0] is not None]
            grads = tape.gradient(loss, model.trainable_variables)
            c = [tf.clip_by_norm(g, 1.0) if g is not None else None for g in grads]
            d = list(map(lambda g: None if g is None else tf.clip_by_norm(g, 1.0), grads))
            e = []
            for g, v in gvs:
                if g is None:
                    continue
                e.append((tf.clip_by_value(g, -1., 1.), v))
            f = []
            for g, v in zip(grads, model.trainable_variables):
                if g is not None:
                    f.append((tf.clip_by_norm(g, 1.0), v))
        """),
        # tf.clip_by_global_norm accepts None.
        Valid("""
            import tensorflow as tf
            with tf.GradientTape() as tape:
                loss = compute_loss(model(x, training=True), y)
            grads = tape.gradient(loss, model.trainable_variables)
            grads, _ = tf.clip_by_global_norm(grads, 5.0)
            opt.apply_gradients(zip(grads, model.trainable_variables))
        """),
        # The list was filtered before clipping.
        Valid("""
            import tensorflow as tf
            gvs = optimizer.compute_gradients(cost)
            gvs = [(g, v) for g, v in gvs if g is not None]
            capped = [(tf.clip_by_value(grad, -1., 1.), var) for grad, var in gvs]
            train_op = optimizer.apply_gradients(capped)
        """),
        # Clipping values that are not gradients.
        Valid("""
            import tensorflow as tf
            outputs = [tf.clip_by_value(p, 1e-7, 1.0) for p in predictions]
            for w in weights:
                w.assign(tf.clip_by_norm(w, 3.0))
        """),
        # every variable of the explicit list feeds the loss: no None possible (seed 001, issue 9)
        Valid("""
            import tensorflow as tf
            W = tf.get_variable('W', shape=[1, 16])
            W1 = tf.get_variable('W1', shape=[16, 16])
            W2 = tf.get_variable('W2', shape=[16, 1])
            O = tf.nn.relu(tf.matmul(I, W))
            O1 = tf.nn.relu(tf.matmul(O, W1))
            loss = tf.reduce_mean(tf.square(tf.matmul(O1, W2) - Y))
            opt = tf.train.GradientDescentOptimizer(0.01)
            gvs = opt.compute_gradients(loss, var_list=[W, W1, W2])
            capped = [(tf.clip_by_value(g, -1., 1.), v) for g, v in gvs]
            train_op = opt.apply_gradients(capped)
        """),
    ]
    INVALID = [
        Invalid(
            """
            import tensorflow as tf
            optimizer = tf.train.AdamOptimizer(1e-3)
            gvs = optimizer.compute_gradients(cost)
            capped_gvs = [(tf.clip_by_value(grad, -1., 1.), var) for grad, var in gvs]
            train_op = optimizer.apply_gradients(capped_gvs)
            """,
            line=4,
            message="without `var_list`",
            confidence="low",  # every trainable variable may feed `cost`
            fixed="""
            import tensorflow as tf
            optimizer = tf.train.AdamOptimizer(1e-3)
            gvs = optimizer.compute_gradients(cost)
            capped_gvs = [(tf.clip_by_value(grad, -1., 1.), var) for grad, var in gvs if grad is not None]
            train_op = optimizer.apply_gradients(capped_gvs)
            """,
        ),
        Invalid(
            """
            import tensorflow as tf
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            grads = [tf.clip_by_norm(g, 1.0) for g in grads]
            opt.apply_gradients(zip(grads, model.trainable_variables))
            """,
            line=5,
            message="`model.trainable_variables`",
            confidence="low",
            fixed="""
            import tensorflow as tf
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            grads = [tf.clip_by_norm(g, 1.0) if g is not None else None for g in grads]
            opt.apply_gradients(zip(grads, model.trainable_variables))
            """,
        ),
        # An explicit list with a variable that does not feed the loss.
        Invalid(
            """
            import tensorflow as tf
            W1 = tf.Variable(tf.random.normal([4, 8]))
            W2 = tf.Variable(tf.random.normal([8, 1]))
            W_old = tf.Variable(tf.random.normal([8, 1]))
            loss = tf.reduce_mean(tf.matmul(tf.nn.relu(tf.matmul(x, W1)), W2))
            grads = tf.gradients(loss, [W1, W2, W_old])
            clipped = [tf.clip_by_value(g, -1., 1.) for g in grads]
            """,
            line=7,
            message="`W_old`",
        ),
        # A for loop and map over gradients received as a parameter.
        Invalid(
            """
            import tensorflow as tf
            def apply(opt, grads_and_vars):
                out = []
                for grad, var in grads_and_vars:
                    out.append((tf.clip_by_norm(grad, 5.0), var))
                return opt.apply_gradients(out)
            def clip_all(grads):
                return list(map(lambda g: tf.clip_by_value(g, -1., 1.), grads))
            """,
            line=5,
            count=2,
            message="assumed",
            confidence="low",
            fixed="""
            import tensorflow as tf
            def apply(opt, grads_and_vars):
                out = []
                for grad, var in grads_and_vars:
                    out.append((tf.clip_by_norm(grad, 5.0) if grad is not None else None, var))
                return opt.apply_gradients(out)
            def clip_all(grads):
                return list(map(lambda g: tf.clip_by_value(g, -1., 1.) if g is not None else None, grads))
            """,
        ),
        # Subscripted pairs, trainable_variables() in TF1.
        Invalid(
            """
            import tensorflow as tf
            gradients = tf.gradients(loss, tf.trainable_variables())
            pairs = zip(gradients, tf.trainable_variables())
            clipped = [(tf.clip_by_norm(gv[0], 10), gv[1]) for gv in pairs]
            """,
            line=4,
            message="`tf.trainable_variables()`",
            confidence="low",
            fixed="""
            import tensorflow as tf
            gradients = tf.gradients(loss, tf.trainable_variables())
            pairs = zip(gradients, tf.trainable_variables())
            clipped = [(tf.clip_by_norm(gv[0], 10), gv[1]) for gv in pairs if gv[0] is not None]
            """,
        ),
    ]

    # -- static -----------------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        ctx = self.ctx
        if ctx.call_name(node) not in tfapi.names("gradients", "clip_per_tensor"):
            return
        kw, pos = tfapi.table("gradients", "clip_tensor_arg")
        arg = get_arg(node, kw, pos)
        if arg is None:
            return
        t = arg.value
        if isinstance(t, cst.Name):
            base = t
        elif isinstance(t, cst.Subscript) and isinstance(t.value, cst.Name):
            base = t.value
        else:
            return
        found = self._binder(node, base.value)
        if found is None:
            return
        binder, target, iterable, path = found
        names = {base.value, ctx.code(t)}
        if any(self._none_check(test, names) for test in path):
            return
        if isinstance(binder, (cst.ListComp, cst.GeneratorExp, cst.SetComp, cst.DictComp)):
            if any(self._none_check(i.test, names) for cf in self._fors(binder) for i in cf.ifs):
                return
        if isinstance(binder, cst.For) and self._skips_none(binder, node, names):
            return
        source = self._gradients(iterable, node, 0)
        if source is None or source[0] == "safe":
            return
        why, grad_call = self._why(source)
        if why is None:
            return
        # high only when the code shows a variable with no path to the target (an explicit list)
        shown = source[0] == "grad" and " does not appear to feed " in why
        clip = ctx.code(node.func)
        gname = ctx.code(t)
        origin = (
            f"`{ctx.code(grad_call.func)}(...)` (line {ctx.line(grad_call)})"
            if grad_call is not None
            else f"`{ctx.code(iterable)}`"
        )
        fix = self._fix(node, t, binder, target)
        self.report(
            node,
            f"`{clip}` is applied to every gradient of {origin} without a `{gname} is not None` guard, but {why}: "
            f"`{clip}` raises on None; skip None gradients (`... if {gname} is not None`) "
            f"or clip with `tf.clip_by_global_norm`, which accepts None"
            + ("" if shown else " (assumed: the code does not show a variable without a path to the loss)"),
            fix=fix,
            confidence="high" if shown else "low",
            data={
                "call_line": ctx.line(node),
                "grad_line": ctx.line(grad_call) if grad_call is not None else None,
                "function": clip,
            },
        )

    # -- the loop that binds the clipped name -----------------------------------------------------
    def _binder(self, call: cst.Call, name: str):
        """(binder node, target, iterable, guard tests on the way) for the loop binding ``name``."""
        ctx = self.ctx
        tests: list[cst.BaseExpression] = []
        child: cst.CSTNode = call
        for a in ctx.ancestors(call):
            if isinstance(a, (cst.IfExp, cst.If)) and child is not a.test:
                tests.append(a.test)
            elif isinstance(a, cst.BooleanOperation) and child is a.right:
                tests.append(a.left)
            elif isinstance(a, (cst.ListComp, cst.GeneratorExp, cst.SetComp, cst.DictComp)):
                binding = [cf for cf in self._fors(a) if name in self._target_names(cf.target)]
                if binding and not any(ctx.contains(cf.iter, call) for cf in self._fors(a)):
                    cf = binding[-1]
                    return a, cf.target, cf.iter, tests
            elif isinstance(a, cst.For) and name in self._target_names(a.target) and ctx.contains(a.body, call):
                return a, a.target, a.iter, tests
            elif isinstance(a, cst.Lambda):
                params = [p.name.value for p in a.params.params]
                arg = ctx.parent(a)
                outer = ctx.parent(arg) if arg is not None else None
                if (
                    name in params
                    and isinstance(arg, cst.Arg)
                    and isinstance(outer, cst.Call)
                    and isinstance(outer.func, cst.Name)
                    and outer.func.value == "map"
                    and len(outer.args) >= 2
                    and outer.args[0] is arg
                ):
                    return a, None, outer.args[1].value, tests
                return None
            elif isinstance(a, (cst.FunctionDef, cst.ClassDef, cst.Module)):
                return None
            child = a
        return None

    @staticmethod
    def _fors(comp) -> list[cst.CompFor]:
        out = []
        cf = comp.for_in
        while cf is not None:
            out.append(cf)
            cf = cf.inner_for_in
        return out

    def _target_names(self, target: cst.BaseExpression | None) -> set[str]:
        out: set[str] = set()
        if isinstance(target, cst.Name):
            out.add(target.value)
        elif isinstance(target, (cst.Tuple, cst.List)):
            for el in target.elements:
                out |= self._target_names(el.value)
        elif isinstance(target, cst.StarredElement):
            out |= self._target_names(target.value)
        return out

    def _none_check(self, test: cst.CSTNode | None, names: set[str]) -> bool:
        """``g is not None``, ``g is None``, ``g != None``, ``gv[0] is not None`` or a bare ``g``."""
        if test is None:
            return False
        ctx = self.ctx
        if isinstance(test, cst.Name) and test.value in names:
            return True
        for n in ctx.descendants(test) if test in ctx.index else ():
            if type(n) is not cst.Comparison:
                continue
            operands = [n.left] + [c.comparator for c in n.comparisons]
            has_none = any(isinstance(o, cst.Name) and o.value == "None" for o in operands)
            if has_none and any(ctx.code(o) in names for o in operands):
                return True
        return False

    def _skips_none(self, loop: cst.For, call: cst.Call, names: set[str]) -> bool:
        """``if g is None: continue`` in the loop body before the clip call."""
        ctx = self.ctx
        start = ctx.index.get(call, 0)
        for n in ctx.descendants(loop.body):
            if ctx.index[n] >= start:
                break
            if type(n) is cst.If and self._none_check(n.test, names):
                return True
        return False

    # -- where the iterated list comes from ----------------------------------------------------
    def _gradients(self, expr: cst.BaseExpression | None, at: cst.CSTNode, depth: int):
        """("grad", call, spec) | ("unknown", text) | ("safe",) | None (not gradients)."""
        ctx = self.ctx
        if expr is None or depth > 6:
            return None
        if isinstance(expr, (cst.Name, cst.Attribute)):
            b = ctx.binding(expr, at) if expr in ctx.index else None
            if (
                b is not None
                and b.value is not None
                and b.kind in ("assign", "annassign", "unpack", "with")
                and b.value in ctx.index
            ):
                return self._gradients(b.value, b.node, depth + 1)
            text = dotted(expr) or ""
            if b is None or b.kind in ("param", "for", "import") or b.value is None:
                return ("unknown", text) if _GRADISH.search(text.split(".")[-1]) else None
            return None
        if isinstance(expr, (cst.ListComp, cst.GeneratorExp)):
            names = self._target_names(expr.for_in.target) | {ctx.code(expr.for_in.target)}
            for n in ctx.descendants(expr):
                if type(n) is cst.Comparison and self._none_check(n, names | {ctx.code(n.left)}):
                    return ("safe",)
            return self._gradients(expr.for_in.iter, expr, depth + 1)
        if isinstance(expr, cst.Subscript):
            return self._gradients(expr.value, at, depth + 1)
        if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Add):
            return self._gradients(expr.left, at, depth + 1) or self._gradients(expr.right, at, depth + 1)
        if not isinstance(expr, cst.Call):
            return None
        spec = self._gradient_call(expr)
        if spec is not None:
            return ("grad", expr, spec)
        func = expr.func
        if isinstance(func, cst.Name) and func.value in _PASS_THROUGH:
            results = [self._gradients(a.value, at, depth + 1) for a in expr.args]
            for kind in ("safe", "grad", "unknown"):
                for r in results:
                    if r is not None and r[0] == kind:
                        return r
            return None
        if isinstance(func, cst.Name) and func.value == "filter":
            return ("safe",)
        return None

    def _gradient_call(self, call: cst.Call):
        """(API name, target expression, variable-list argument, its keyword) of a call that
        returns gradients, from the file's gradient requests."""
        req = gradient_targets(self.ctx).request(call)
        if req is None or req.kind not in _RETURNS_GRADIENTS:
            return None
        return (_RETURNS_GRADIENTS[req.kind], req.target, req.sources, req.sources_keyword)

    def _why(self, source) -> tuple[str | None, cst.Call | None]:
        """Why the list can hold None, or (None, call) when every variable feeds the loss."""
        ctx = self.ctx
        if source[0] == "unknown":
            return (
                f"`{source[1]}` comes from outside this function (assumed to hold gradients) and can hold None "
                "for variables that do not feed the loss"
            ), None
        _, call, (name, target, var_list, vkw) = source
        if var_list is None:
            if name in ("compute_gradients", "get_gradients"):
                return (
                    f"called without `{vkw}`, it differentiates every trainable variable, and those that do not "
                    "feed the loss get a None gradient"
                ), call
            return (
                "its variable list cannot be read, so it can hold variables that do not feed the loss (None gradients)",
                call,
            )
        elements = self._elements(var_list, call)
        listed = f"`{ctx.code(var_list)}`"
        if len(listed) > 50:
            listed = "its variable list"
        if elements is None:
            return (
                f"the variable list {listed} can hold variables that do not feed the loss (unused layers, "
                "frozen branches, another network's variables), whose gradient is None"
            ), call
        if target is None:
            return "its target cannot be read, so a variable may not feed it (None gradient)", call
        deps = dependency_names(ctx, target)
        missing = [e for e in elements if e not in deps]
        if not missing:
            return None, call
        shown = ", ".join(f"`{m}`" for m in missing[:5])
        loss = ctx.code(target)
        loss = f"`{loss}`" if len(loss) <= 40 else "the loss"
        return f"{shown} in its variable list does not appear to feed {loss}, so its gradient is None", call

    def _elements(self, expr: cst.BaseExpression, at: cst.CSTNode) -> list[str] | None:
        """Dotted names of an explicit variable list (a literal, possibly bound to a name)."""
        ctx = self.ctx
        for _ in range(4):
            if isinstance(expr, (cst.Name, cst.Attribute)) and expr in ctx.index:
                b = ctx.binding(expr, at)
                if b is None or b.value is None or b.kind not in ("assign", "annassign"):
                    return None
                expr, at = b.value, b.node
                continue
            break
        if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Add):
            left, right = self._elements(expr.left, at), self._elements(expr.right, at)
            return left + right if left is not None and right is not None else None
        if not isinstance(expr, (cst.List, cst.Tuple)):
            return None
        out = []
        for el in expr.elements:
            d = dotted(el.value) if not isinstance(el, cst.StarredElement) else None
            if d is None:
                return None
            out.append(d)
        return out

    # -- fix -------------------------------------------------------------------------------------
    def _fix(self, call: cst.Call, t: cst.BaseExpression, binder, target):
        ctx = self.ctx
        gname = ctx.code(t)
        comps = (cst.ListComp, cst.GeneratorExp, cst.SetComp, cst.DictComp)
        pairs = isinstance(t, cst.Subscript) or isinstance(target, (cst.Tuple, cst.List))
        if isinstance(binder, comps) and pairs:
            guard = cst.CompIf(test=cst.parse_expression(f"{gname} is not None"))

            def rebuild(cf: cst.CompFor) -> cst.CompFor:
                inner = rebuild(cf.inner_for_in) if cf.inner_for_in is not None else None
                if cf.target is target:
                    return cf.with_changes(ifs=[*cf.ifs, guard], inner_for_in=inner)
                return cf.with_changes(inner_for_in=inner)

            new = binder.with_changes(for_in=rebuild(binder.for_in))
            return self.replace(binder, new, f"Skip None gradients (`if {gname} is not None`)", "unsafe")
        text = f"{ctx.code(call)} if {gname} is not None else None"
        parent = ctx.parent(call)
        if not isinstance(parent, _NO_PARENS) or (
            isinstance(parent, cst.Arg) and parent.keyword is None and parent.star
        ):
            text = f"({text})"
        return self.replace(call, text, f"Clip only non-None gradients (`if {gname} is not None else None`)", "unsafe")

    # -- confirmation -----------------------------------------------------------------------------
    OBSERVES = ("clip_none", "gradient_call")
    CONFIRMS = [
        Traced(
            (event("clip_none", 12, function="clip_by_norm"),),
            evidence="a None gradient reached `clip_by_norm` at line 12",
            line=12,
            data={"call_line": 12, "grad_line": 10, "function": "tf.clip_by_norm"},
        ),
        Traced(
            (event("gradient_call", 10, variables=[{"name": "w", "grad": "none"}]),),
            evidence="returns None for w; clipping it raised",
            line=12,
            data={"call_line": 12, "grad_line": 10},
            status="error",
            error_line=12,
            reason="ValueError: None values not supported.",
        ),
    ]
    REFUTES = [
        Traced(
            (event("gradient_call", 10, variables=[{"name": "w", "grad": "ok"}], count=5),),
            evidence="all 1 gradients of the call at line 10 were non-None over the 5 traced call(s)",
            line=12,
            data={"call_line": 12, "grad_line": 10},
        )
    ]
    INCONCLUSIVE = [
        Traced(  # the clip ran and nothing was recorded: the probe may not cover this clip function
            (),
            evidence="no gradient call",
            line=12,
            data={"call_line": 12},
        ),
        Traced(  # None gradients, but no clip call was seen receiving them
            (event("gradient_call", 10, variables=[{"name": "w", "grad": "none"}]),),
            evidence="no clip call was seen receiving",
            line=12,
            data={"call_line": 12, "grad_line": 10},
        ),
    ]

    @classmethod
    def confirm(cls, finding, trace) -> Outcome | None:
        line = finding.data.get("call_line", finding.line)
        end = line + max(0, finding.end_line - finding.line)
        hits = trace.events_at("clip_none", line, end)
        if hits:
            fn = hits[0].get("function") or finding.data.get("function", "the clip function")
            return confirmed(
                f"a None gradient reached `{fn}` at line {hits[0].get('line')} (step {hits[0].get('step')}), which raises"
            )
        grad_line = finding.data.get("grad_line")
        calls = trace.events_at("gradient_call", grad_line) if grad_line else []
        if not calls:
            return inconclusive(
                "no gradient call feeding the clip was recorded, and no None reached a clip function the tracer watches"
            )
        variables = calls[0].get("variables") or []
        none = [v.get("name") for v in variables if v.get("grad") == "none"]
        if none:
            shown = ", ".join(map(str, none[:8]))
            if trace.error_line is not None and line <= trace.error_line <= end:
                return confirmed(
                    f"the gradient call at line {grad_line} returns None for {shown}; clipping it raised: {trace.reason}"
                )
            return inconclusive(
                f"the gradient call at line {grad_line} returns None for {shown}, but no clip call was seen receiving it"
            )
        if variables and trace.executed(line):
            return refuted(
                f"all {len(variables)} gradients of the call at line {grad_line} were non-None "
                f"over the {calls[0].get('count', 1)} traced call(s)"
            )
        return inconclusive(f"the gradient call at line {grad_line} recorded no variables")
