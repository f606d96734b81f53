from __future__ import annotations

import libcst as cst

from tflint_grad import tfapi
from tflint_grad.analysis import dotted, get_arg, string_value
from tflint_grad.finding import Fix
from tflint_grad.rule import Invalid, Outcome, Rule, Valid


class GradientWrtNonTrainable(Rule):
    """Gradients are taken with respect to a variable list that includes non-trainable variables.

    ## What it does
    Flags `tape.gradient`, `tf.gradients`, `opt.compute_gradients(var_list=...)`,
    `opt.minimize(var_list=...)` and `opt.apply_gradients(zip(grads, X))` when the
    variable list is `model.variables`, `model.weights`, `layer.variables`,
    `tf.global_variables()` / `tf.all_variables()`, or
    `tf.get_collection(tf.GraphKeys.GLOBAL_VARIABLES[, scope])`, written inline or
    bound to a name first.

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
    The traced variable list holds non-trainable variables whose gradient is None
    (evidence names them); `refuted` when every variable in the list is trainable.
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
        ),
        Invalid(
            """
            import tensorflow.compat.v1 as tf
            train = tf.train.AdamOptimizer().minimize(loss, var_list=tf.global_variables())
            """,
            line=2,
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
        ),
    ]

    # -- static ---------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        var_list = self._var_list_arg(node)
        if var_list is None:
            return
        if isinstance(node.func, cst.Attribute) and node.func.attr.value == "apply_gradients":
            if self._grads_already_flagged(var_list, node):
                return
        problem = self._non_trainable(var_list.value, node)
        if problem is None:
            return
        what, fix_node, fix_text, bound_at, owner = problem
        where = f" (bound at line {self.ctx.line(bound_at)})" if bound_at is not None else ""
        fix = None
        if fix_node is not None:
            fix = self._consistent_fix(node, fix_node, fix_text)
        severity = None
        why = (
            "which includes non-trainable variables (e.g. BatchNormalization moving_mean/moving_variance): "
            "their gradients are always None"
        )
        if owner is not None:
            info = self.ctx.model_info(owner, node)
            name = self.ctx.code(owner)
            if info.kind in ("model", "layer") and info.batch_norm:
                why = (
                    f"which includes the non-trainable moving_mean/moving_variance of the BatchNormalization in "
                    f"`{name}` ({info.description}): their gradients are always None"
                )
            elif info.kind in ("model", "layer") and not info.frozen:
                severity = "info"
                why = (
                    f"which also holds any non-trainable variables; `{name}` ({info.description}) has none that "
                    "the static pass can see, so this may be harmless today, but their gradients would be None "
                    "as soon as one is added (e.g. BatchNormalization)"
                )
        self.report(
            var_list.value,
            f"gradients taken w.r.t. {what}{where}, {why}; use the trainable variables instead",
            fix=fix,
            severity=severity,
            data={"call": self.ctx.code(node.func)[-40:], "call_line": self.ctx.line(node)},
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
            for n in self.ctx.nodes:
                if not (
                    type(n) is cst.Call
                    and isinstance(n.func, cst.Attribute)
                    and n.func.attr.value == "apply_gradients"
                    and n.args
                ):
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

    def _var_list_arg(self, call: cst.Call) -> cst.Arg | None:
        ctx = self.ctx
        func = call.func
        qn = ctx.call_name(call)
        if qn in tfapi.names("gradients", "tf_gradients"):
            return get_arg(call, "xs", 1)
        if not isinstance(func, cst.Attribute):
            return None
        method = func.attr.value
        if method == "gradient" and ctx.is_tape(func.value, call):
            return get_arg(call, "sources", 1)
        for name, keyword, pos in tfapi.table("gradients", "var_list_methods"):
            if method == name:
                if name == "minimize":
                    return get_arg(call, keyword)
                return get_arg(call, keyword, pos)
        if method == "apply_gradients" and call.args:
            zipped = call.args[0].value
            if (
                isinstance(zipped, cst.Call)
                and isinstance(zipped.func, cst.Name)
                and zipped.func.value == "zip"
                and len(zipped.args) == 2
            ):
                return zipped.args[1]
        return None

    def _grads_already_flagged(self, var_list: cst.Arg, call: cst.Call) -> bool:
        """apply_gradients(zip(grads, X)) where grads came from a call this rule flags."""
        zipped = call.args[0].value
        grads = zipped.args[0].value  # type: ignore[attr-defined]
        b = self.ctx.binding(grads, call)
        if b is None or not isinstance(b.value, cst.Call):
            return False
        arg = self._var_list_arg(b.value)
        return arg is not None and self._non_trainable(arg.value, b.value) is not None

    def _non_trainable(self, expr: cst.BaseExpression, at: cst.CSTNode):
        """(description, node to fix, replacement, binding node) if ``expr`` holds all variables."""
        ctx = self.ctx
        bound_at = None
        value = expr
        if isinstance(expr, (cst.Name, cst.Attribute)) and not self._is_var_attr(expr):
            b = ctx.binding(expr, at)
            if b is None or b.value is None or b.kind not in ("assign", "annassign"):
                return None
            value, bound_at = b.value, b.node
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
    def _is_var_attr(expr: cst.BaseExpression) -> bool:
        if not isinstance(expr, cst.Attribute):
            return False
        attr = expr.attr.value
        return attr in tfapi.names("gradients", "all_variable_attrs") or attr in tfapi.names(
            "gradients", "non_trainable_attrs"
        )

    # -- confirmation -------------------------------------------------------------------
    @classmethod
    def confirm(cls, finding, trace) -> Outcome | None:
        calls = trace.events_at("gradient_call", finding.data.get("call_line", finding.line))
        if not calls:
            return None
        ev = calls[0]
        variables = ev.get("variables", [])
        bad = [v for v in variables if not v.get("trainable", True)]
        none_bad = [v["name"] for v in bad if v.get("grad") == "none"]
        if bad:
            names = ", ".join(v["name"] for v in bad[:8])
            extra = f"; gradient is None for {', '.join(none_bad[:8])}" if none_bad else ""
            return Outcome(
                "confirmed",
                f"the list passed at line {ev['line']} holds {len(bad)} non-trainable variable(s) of {len(variables)}: {names}{extra}",
            )
        return Outcome("refuted", f"all {len(variables)} variables passed at line {ev['line']} are trainable")
