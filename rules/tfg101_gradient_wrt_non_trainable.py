from __future__ import annotations

import libcst as cst

from tflint_grad import tfapi
from tflint_grad.analysis import dotted, get_arg, string_value
from tflint_grad.finding import Fix
from tflint_grad.rule import Invalid, Outcome, Rule, Traced, Valid, confirmed, inconclusive, refuted
from tflint_grad.tracer.events import event


class GradientWrtNonTrainable(Rule):
    """Gradients are taken with respect to a variable list that includes non-trainable variables.

    ## What it does
    Flags `tape.gradient`, `tf.gradients`, `opt.compute_gradients(var_list=...)`,
    `opt.minimize(var_list=...)` and `opt.apply_gradients(zip(grads, X))` when the
    variable list is `model.variables`, `model.weights`, `layer.variables`,
    `tf.global_variables()` / `tf.all_variables()`, or
    `tf.get_collection(tf.GraphKeys.GLOBAL_VARIABLES[, scope])`, written inline, bound to
    a name first or built from parts (`encoder.variables + head.trainable_variables`), and
    the code shows that the list holds non-trainable variables: a BatchNormalization in the
    model (also in a backbone defined in a sibling module), variables created with
    `trainable=False`, a global step. `.variables` of a `tf.Module`, a plain class of
    `tf.Variable`s or a model without such variables is the trainable list and is not
    flagged. When the model's layers cannot be seen the finding is `low` confidence
    (hidden by default) and says what was assumed.

    ## Why is this bad?
    These lists include non-trainable variables such as batch normalization's
    `moving_mean` and `moving_variance`. Their gradients are always `None`: the
    optimizer skips them (sometimes with a confusing "Gradients do not exist for
    variables" warning), clipping code crashes on them, and the `None`s look like a
    layer that "blocks backprop" (seed 000, seed 004).

    ## Example
    ```python
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    grads = tape.gradient(loss, model.variables)
    opt.apply_gradients(zip(grads, model.variables))
    ```

    Use instead:
    ```python
    grads = tape.gradient(loss, model.trainable_variables)
    opt.apply_gradients(zip(grads, model.trainable_variables))
    ```

    ## Fix safety
    Replacing `model.variables` / `model.weights` by `model.trainable_variables`,
    `GLOBAL_VARIABLES` by `TRAINABLE_VARIABLES` and `global_variables()` by
    `trainable_variables()` in the call is safe: the gradients of the removed
    variables were `None`. When the list is bound to a name used elsewhere the
    fix is not offered.

    ## Confirmation
    The traced variable list holds non-trainable variables and a consequence is seen: their
    gradient is None, or their gradient was applied to them (evidence names them); a
    non-trainable variable with a gradient never applied is `inconclusive`. `refuted` when
    every variable in the list is trainable.
    """

    code = "TFG101"
    name = "gradient-wrt-non-trainable"
    severity = "warning"
    requires = ("gradient", "minimize", "apply_gradients")

    VALID = [
        Valid("""
            import tensorflow as tf
            with tf.GradientTape() as tape:
                loss = model(x, training=True)
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
        """),
        Valid("""
            import tensorflow as tf
            params = tf.get_collection(tf.GraphKeys.TRAINABLE_VARIABLES, scope="actor")
            grads = tf.gradients(loss, params)
        """),
        Valid("""
            import tensorflow.compat.v1 as tf
            grads = tf.gradients(loss, tf.trainable_variables())
        """),
        Valid("""
            import tensorflow as tf
            saver_vars = model.variables  # not used for gradients
        """),
        # a scoped GLOBAL_VARIABLES collection of a scope that creates only trainable variables
        Valid("""
            import tensorflow as tf
            with tf.variable_scope("actor"):
                w = tf.get_variable("w", [4, 2])
                b = tf.get_variable("b", [2])
            params = tf.get_collection(tf.GraphKeys.GLOBAL_VARIABLES, scope="actor")
            grads = tf.gradients(loss, params)
        """),
        # a tf.Module of trainable tf.Variables: `.variables` is the trainable list
        Valid("""
            import tensorflow as tf
            class Linear(tf.Module):
                def __init__(self):
                    self.w = tf.Variable(tf.random.normal([3, 1]))
                    self.b = tf.Variable(tf.zeros([1]))
                def __call__(self, x):
                    return x @ self.w + self.b
            model = Linear()
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(x) - y))
            grads = tape.gradient(loss, model.variables)
        """),
        # a plain class of variables, passed to the training step: resolved through its call site
        Valid("""
            import tensorflow as tf
            class NaiveDense:
                def __init__(self, n):
                    self.W = tf.Variable(tf.zeros([4, n]))
                @property
                def weights(self):
                    return [self.W]
            def step(model, x):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_sum(x @ model.W)
                return tape.gradient(loss, model.weights)
            step(NaiveDense(2), x)
        """),
        # a Keras model without non-trainable variables
        Valid("""
            import tensorflow as tf
            model = tf.keras.Sequential([tf.keras.layers.Dense(8), tf.keras.layers.Dense(1)])
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model(x))
            grads = tape.gradient(loss, model.variables)
        """),
    ]
    INVALID = [
        Invalid(
            """
            import tensorflow as tf
            model = tf.keras.Sequential([tf.keras.layers.BatchNormalization()])
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model(x, training=True))
            grads = tape.gradient(loss, model.variables)
            opt.apply_gradients(zip(grads, model.variables))
            """,
            line=5,
            message="`model.variables`",
            count=1,
            fixed="""
            import tensorflow as tf
            model = tf.keras.Sequential([tf.keras.layers.BatchNormalization()])
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
            """,
        ),
        Invalid(
            """
            import tensorflow as tf
            class Actor:
                def __init__(self):
                    self.e_params = tf.get_collection(tf.GraphKeys.GLOBAL_VARIABLES, scope='actor')
                    self.grads = tf.gradients(ys=self.loss, xs=self.e_params)
            """,
            line=5,
            message="GLOBAL_VARIABLES",
            confidence="low",
        ),
        # the script creates a non-trainable variable: the global collection visibly holds it
        Invalid(
            """
            import tensorflow as tf
            global_step = tf.Variable(0, trainable=False)
            params = tf.get_collection(tf.GraphKeys.GLOBAL_VARIABLES, scope="actor")
            grads = tf.gradients(loss, params)
            """,
            line=4,
            message="`trainable=False` variable at line 2",
        ),
        # a list built from parts: the encoder's BatchNormalization statistics are in it
        Invalid(
            """
            import tensorflow as tf
            encoder = tf.keras.Sequential([tf.keras.layers.Dense(8), tf.keras.layers.BatchNormalization()])
            head = tf.keras.layers.Dense(1)
            params = encoder.variables + head.trainable_variables
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(head(encoder(x, training=True)))
            grads = tape.gradient(loss, params)
            """,
            line=7,
            message="`encoder.variables` (bound at line 4)",
        ),
        Invalid(
            """
            import tensorflow.compat.v1 as tf
            train = tf.train.AdamOptimizer().minimize(loss, var_list=tf.global_variables())
            """,
            line=2,
            confidence="low",
            fixed="""
            import tensorflow.compat.v1 as tf
            train = tf.train.AdamOptimizer().minimize(loss, var_list=tf.trainable_variables())
            """,
        ),
        Invalid(
            """
            from tensorflow import keras
            import tensorflow as tf
            def step(model, x):
                with tf.GradientTape() as tape:
                    loss = model(x, training=True)
                grads = tape.gradient(loss, model.weights)
                return grads
            """,
            line=6,
            message="`model.weights`",
            confidence="low",
        ),
    ]

    # -- static ---------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        var_list = self._var_list(node)
        if var_list is None:
            return
        is_apply = isinstance(node.func, cst.Attribute) and node.func.attr.value == "apply_gradients"
        if is_apply and self._grads_already_flagged(node):
            return
        problem, premise = self._verdict(node, var_list)
        if problem is None:
            return
        what, fix_node, fix_text, bound_at, _ = problem
        where = f" (bound at line {self.ctx.line(bound_at)})" if bound_at is not None else ""
        fix = None
        if fix_node is not None:
            fix = self._consistent_fix(node, fix_node, fix_text)
        if premise is None:
            return
        why, confidence = premise
        self.report(
            var_list,
            f"gradients taken w.r.t. {what}{where}, {why}; use the trainable variables instead",
            fix=fix,
            data={"call": self.ctx.code(node.func)[-40:], "call_line": self.ctx.line(node)},
            confidence=confidence,
        )

    def _consistent_fix(self, call: cst.Call, fix_node: cst.CSTNode, fix_text: str) -> Fix:
        """The replacement, plus the same one in every ``apply_gradients(zip(grads, X))`` that
        pairs the gradients of ``call`` with the same list ``X``: applied alone (an editor's
        quick fix, a SARIF consumer), the fix must leave the code consistent, not a new
        TFG101 and a TFG102 on the ``apply_gradients`` line."""
        fix = self.replace(fix_node, fix_text, f"Use `{fix_text}`")
        old = self.ctx.code(fix_node)
        edits = list(fix.edits)
        for apply, grads, var_list in self._zip_applies().get(old, ()):
            b = self.ctx.binding(grads, apply)
            if b is not None and b.value is call:
                edits.extend(self.replace(var_list, fix_text, fix.message).edits)
        return Fix(fix.message, tuple(edits), fix.applicability)

    def _zip_applies(self) -> dict[str, list[tuple[cst.Call, cst.BaseExpression, cst.BaseExpression]]]:
        """Every ``apply_gradients(zip(grads, X))`` of the file as (call, grads, X), by the
        code of ``X``, in document order (computed once per file: the code of each ``X`` is
        generated once, not once per finding)."""
        found = getattr(self, "_zip_apply_calls", None)
        if found is None:
            found = self._zip_apply_calls = {}
            for n in self.ctx.calls_named("apply_gradients"):
                if not (isinstance(n.func, cst.Attribute) and n.func.attr.value == "apply_gradients" and n.args):
                    continue
                zipped = n.args[0].value
                if (
                    isinstance(zipped, cst.Call)
                    and isinstance(zipped.func, cst.Name)
                    and zipped.func.value == "zip"
                    and len(zipped.args) == 2
                ):
                    grads, var_list = zipped.args[0].value, zipped.args[1].value
                    found.setdefault(self.ctx.code(var_list), []).append((n, grads, var_list))
        return found

    def _premise(self, owner: cst.BaseExpression | None, at: cst.CSTNode) -> tuple[str, str] | None:
        """(why, confidence): the non-trainable variables the code shows in the list, or what
        was assumed; None when the code shows there are none."""
        ctx = self.ctx
        if owner is None:  # tf.global_variables() / the GLOBAL_VARIABLES collection
            shown = self._file_non_trainable()
            if shown:
                return (
                    f"which includes the non-trainable variables the script creates ({shown}): "
                    "their gradients are always None"
                ), "high"
            return (
                "which would include any non-trainable variables (BatchNormalization statistics, a global "
                "step): assumed the graph holds some, the script creates none visibly"
            ), "low"
        info = ctx.model_info(owner, at)
        name = ctx.code(owner)
        if info.batch_norm:
            return (
                f"which includes the non-trainable moving_mean/moving_variance of the BatchNormalization in "
                f"`{name}` ({info.description}): their gradients are always None"
            ), "high"
        if info.non_trainable:
            return (
                f"which includes the non-trainable variables of `{name}` ({info.description}, created with "
                "`trainable=False`): their gradients are always None"
            ), "high"
        if info.kind == "unknown" or info.unseen:
            seen = info.description if info.kind == "unknown" else f"{info.description} holds {info.unseen[0]}"
            return (
                f"which includes any non-trainable variables (e.g. BatchNormalization moving_mean/"
                f"moving_variance); could not see the variables of `{name}` ({seen}): assumed it holds some"
            ), "low"
        return None  # every variable the code shows is trainable: `.variables` is the same list

    def _file_non_trainable(self) -> str | None:
        """A non-trainable variable the file creates: a batch norm, `trainable=False`, a global step."""
        cache = self.__dict__.get("_nt_cache", ())
        if cache != ():
            return cache
        ctx = self.ctx
        found = None
        bn = tfapi.names("layers", "batch_norm_classes")
        tf1_bn = {row[0] for row in tfapi.table("layers", "tf1_batch_norm")}
        for n in ctx.nodes_of(cst.Call):
            qn = ctx.call_name(n) or ""
            last = qn.rsplit(".", 1)[-1]
            if qn in tf1_bn or last in bn:
                found = f"batch normalization at line {ctx.line(n)}"
            elif last in ("get_or_create_global_step", "create_global_step", "ExponentialMovingAverage"):
                found = f"`{last}` at line {ctx.line(n)}"
            else:
                arg = get_arg(n, "trainable")
                if arg is not None and isinstance(arg.value, cst.Name) and arg.value.value == "False":
                    found = f"a `trainable=False` variable at line {ctx.line(n)}"
            if found:
                break
        self.__dict__["_nt_cache"] = found
        return found

    def _var_list(self, call: cst.Call) -> cst.BaseExpression | None:
        """The variable list of a gradient request (``ctx.gradient_calls``) or of
        ``apply_gradients(zip(grads, X))``."""
        gc = self.ctx.gradient_call(call)
        if gc is not None:
            return gc.sources if gc.kind != "compile" else None
        func = call.func
        if isinstance(func, cst.Attribute) and func.attr.value == "apply_gradients" and call.args:
            zipped = call.args[0].value
            if (
                isinstance(zipped, cst.Call)
                and isinstance(zipped.func, cst.Name)
                and zipped.func.value == "zip"
                and len(zipped.args) == 2
            ):
                return zipped.args[1].value
        return None

    def _grads_already_flagged(self, call: cst.Call) -> bool:
        """apply_gradients(zip(grads, X)) where grads came from a call this rule flags."""
        zipped = call.args[0].value
        grads = zipped.args[0].value  # type: ignore[attr-defined]
        b = self.ctx.binding(grads, call)
        if b is None or not isinstance(b.value, cst.Call):
            return False
        var_list = self._var_list(b.value)
        if var_list is None:
            return False
        problem, premise = self._verdict(b.value, var_list)
        return problem is not None and premise is not None

    def _verdict(self, call: cst.Call, var_list: cst.BaseExpression):
        """(``_non_trainable``, ``_premise``) of the variable list of ``call``, once per call
        (its ``apply_gradients(zip(grads, X))`` asks again)."""
        verdicts = self.__dict__.setdefault("_verdicts", {})
        got = verdicts.get(id(call))
        if got is None:
            problem = self._non_trainable(var_list, call)
            premise = self._premise(problem[4], call) if problem is not None else None
            got = verdicts[id(call)] = (problem, premise)
        return got

    def _non_trainable(self, expr: cst.BaseExpression, at: cst.CSTNode):
        """(description, node to fix, replacement, binding node, owner) if ``expr`` holds all
        variables of ``owner`` (None: the global collection). A list built with ``+`` or
        ``[...]`` is checked part by part."""
        ctx = self.ctx
        bound_at = None
        value = expr
        if isinstance(expr, (cst.Name, cst.Attribute)) and not self._is_var_attr(expr):
            b = ctx.binding(expr, at)
            if b is None or b.value is None or b.kind not in ("assign", "annassign"):
                return None
            value, bound_at = b.value, b.node
        parts = self._parts(value)
        if len(parts) > 1:
            for part in parts:
                found = self._non_trainable(part, at)
                if found is not None and self._premise(found[4], at) is not None:
                    what, _, _, _, owner = found
                    return what, (None if bound_at is not None else found[1]), found[2], bound_at, owner
            return None
        if isinstance(value, cst.Attribute) and self._is_var_attr(value):
            attr = value.attr.value
            owner = dotted(value.value) or ctx.code(value.value)
            replacement = ctx.code(value.value) + ".trainable_variables"
            return f"`{owner}.{attr}`", (value if bound_at is None else None), replacement, bound_at, value.value
        if isinstance(value, cst.Call):
            qn = ctx.call_name(value)
            if qn in tfapi.names("gradients", "global_variable_calls"):
                text = ctx.code(value.func)
                new = text.rsplit(".", 1)[0] + ".trainable_variables()" if "." in text else "tf.trainable_variables()"
                return f"`{text}()`", (value if bound_at is None else None), new, bound_at, None
            if qn in tfapi.names("gradients", "get_collection") and value.args:
                key = value.args[0].value
                key_qn = ctx.qualname(key)
                if key_qn in tfapi.names("gradients", "global_collection_keys") or string_value(key) in tfapi.names(
                    "gradients", "global_collection_strings"
                ):
                    fix_node = key if (bound_at is None and isinstance(key, cst.Attribute)) else None
                    new = ctx.code(key.value) + ".TRAINABLE_VARIABLES" if isinstance(key, cst.Attribute) else ""
                    return "the GLOBAL_VARIABLES collection", fix_node, new, bound_at, None
        return None

    @staticmethod
    def _parts(value: cst.BaseExpression) -> list[cst.BaseExpression]:
        """``a.variables + b.trainable_variables`` / ``[*a.variables, *b.variables]``: the parts."""
        if isinstance(value, cst.BinaryOperation) and isinstance(value.operator, cst.Add):
            return [*GradientWrtNonTrainable._parts(value.left), *GradientWrtNonTrainable._parts(value.right)]
        if isinstance(value, (cst.List, cst.Tuple)):
            return [e.value for e in value.elements]
        return [value]

    @staticmethod
    def _is_var_attr(expr: cst.BaseExpression) -> bool:
        if not isinstance(expr, cst.Attribute):
            return False
        attr = expr.attr.value
        return attr in tfapi.names("gradients", "all_variable_attrs") or attr in tfapi.names(
            "gradients", "non_trainable_attrs"
        )

    # -- confirmation -------------------------------------------------------------------
    OBSERVES = ("gradient_call", "apply_gradients")
    CONFIRMS = [
        Traced(
            (
                event(
                    "gradient_call",
                    10,
                    variables=[
                        {"name": "dense/kernel", "trainable": True, "grad": "ok"},
                        {"name": "bn/moving_mean", "trainable": False, "grad": "none"},
                    ],
                ),
            ),
            evidence="gradient is None for bn/moving_mean",
            data={"call_line": 10},
        ),
        Traced(  # a real gradient applied to a frozen variable: the optimizer moves it
            (
                event("gradient_call", 10, variables=[{"name": "frozen/w", "trainable": False, "grad": "ok"}]),
                event("apply_gradients", 11, api="apply_gradients", variables=["frozen/w"], none=[]),
            ),
            evidence="applied to frozen/w",
            data={"call_line": 10},
        ),
    ]
    REFUTES = [
        Traced(
            (event("gradient_call", 10, variables=[{"name": "dense/kernel", "trainable": True, "grad": "ok"}]),),
            evidence="all 1 variables passed at line 10 are trainable",
            data={"call_line": 10},
        )
    ]
    INCONCLUSIVE = [
        Traced((), evidence="no gradient call was recorded", data={"call_line": 10}),
        Traced(  # non-trainable in the list, but its gradient exists and was never applied: no consequence seen
            (event("gradient_call", 10, variables=[{"name": "frozen/w", "trainable": False, "grad": "ok"}]),),
            evidence="no consequence",
            data={"call_line": 10},
        ),
        Traced((event("gradient_call", 10, variables=[]),), evidence="no variables", data={"call_line": 10}),
    ]

    @classmethod
    def confirm(cls, finding, trace) -> Outcome | None:
        line = finding.data.get("call_line", finding.line)
        calls = trace.events_at("gradient_call", line)
        if not calls:
            return inconclusive(f"no gradient call was recorded at line {line}")
        ev = calls[0]
        variables = [v for v in ev.get("variables") or [] if isinstance(v, dict)]
        if not variables:
            return inconclusive(f"the gradient call at line {ev['line']} recorded no variables")
        bad = [v for v in variables if v.get("trainable") is False]
        if not bad:
            return refuted(f"all {len(variables)} variables passed at line {ev['line']} are trainable")
        names = ", ".join(str(v.get("name")) for v in bad[:8])
        none_bad = [str(v.get("name")) for v in bad if v.get("grad") == "none"]
        applied = {str(n) for a in trace.events_of("apply_gradients") for n in a.get("variables") or []}
        moved = [str(v.get("name")) for v in bad if v.get("grad") != "none" and str(v.get("name")) in applied]
        shape = f"the list passed at line {ev['line']} holds {len(bad)} non-trainable variable(s) of {len(variables)}: {names}"
        if none_bad:
            return confirmed(f"{shape}; gradient is None for {', '.join(none_bad[:8])}")
        if moved:
            return confirmed(f"{shape}; their gradients were applied to {', '.join(moved[:8])}")
        return inconclusive(f"{shape}, but their gradients exist and were not seen applied: no consequence observed")
