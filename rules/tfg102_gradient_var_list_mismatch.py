from __future__ import annotations

import re

import libcst as cst

from tflint_grad import tfapi
from tflint_grad.analysis import dotted, get_arg, string_value
from tflint_grad.rule import Invalid, Outcome, Rule, Traced, Valid, confirmed, inconclusive, refuted
from tflint_grad.tracer.events import event

_WS = re.compile(r"\s+")

# Descriptor of a variable-list expression. Known shapes:
#   ("attr", owner_key, kind)          model.trainable_variables / model.variables / ...
#   ("global", kind, scope_key)        tf.trainable_variables(), get_collection(KEY, scope)
#   ("list", (item_key, ...))          [W, b]
#   ("concat", (descriptor, ...))      a.trainable_variables + b.trainable_variables
#   ("opaque", key)                    anything else; equal keys mean the same list
Descriptor = tuple


def _known(d: Descriptor) -> bool:
    if d[0] == "opaque":
        return False
    if d[0] == "concat":
        return all(_known(p) for p in d[1])
    return True


class GradientVarListMismatch(Rule):
    """Gradients are taken w.r.t. one variable list and applied to a different one.

    ## What it does
    Pairs each `grads = tape.gradient(loss, A)` / `grads = tf.gradients(loss, A)` with the
    `opt.apply_gradients(zip(grads, B))` (or Keras 3 `opt.apply(grads, B)`) of the same
    function (or module) and flags it
    when `A` and `B` are different lists: `model.variables` vs `model.trainable_variables`,
    the variables of two different models, two different global collections, or two
    different literal lists. Names bound once are followed to their value; clipping
    (`tf.clip_by_global_norm`, a comprehension over `grads`) is looked through.

    ## Why is this bad?
    `zip` pairs the i-th gradient with the i-th variable. When the lists differ the
    gradients land on the wrong variables (silently, if the shapes happen to match) or
    `zip` truncates the longer list, so some variables are never updated. A classic case
    is a GAN whose generator gradients are applied to the discriminator's variables.

    ## Example
    ```python
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    grads = tape.gradient(loss, model.variables)
    opt.apply_gradients(zip(grads, model.trainable_variables))
    ```

    Use instead:
    ```python
    grads = tape.gradient(loss, model.trainable_variables)
    opt.apply_gradients(zip(grads, model.trainable_variables))
    ```

    ## Confirmation
    The traced variable list of the gradient call and the list received by
    `apply_gradients` differ in length or order (evidence shows the first difference);
    `refuted` when both hold the same variables in the same order.
    """

    code = "TFG102"
    name = "gradient-var-list-mismatch"
    severity = "error"
    requires = ("apply_gradients", ".apply(")

    VALID = [
        # the same expression
        Valid("""
            import tensorflow as tf
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
        """),
        # the same name bound once
        Valid("""
            import tensorflow as tf
            params = model.trainable_variables
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model(x, training=True))
            grads = tape.gradient(loss, params)
            opt.apply_gradients(zip(grads, params))
        """),
        # a name bound once to the expression used on the other side; weights == variables
        Valid("""
            from tensorflow import keras
            import tensorflow as tf
            def train_step(model, opt, x, y):
                tvars = model.trainable_weights
                with tf.GradientTape() as tape:
                    loss = keras.losses.mse(y, model(x, training=True))
                grads = tape.gradient(loss, tvars)
                grads, _ = tf.clip_by_global_norm(grads, 5.0)
                opt.apply_gradients(zip(grads, model.trainable_variables))
        """),
        # TF1: tf.gradients + apply_gradients on the same collection (seed 000 fixed)
        Valid("""
            import tensorflow.compat.v1 as tf
            class Actor(object):
                def __init__(self):
                    self.e_params = tf.get_collection(tf.GraphKeys.TRAINABLE_VARIABLES, scope='actor')
                    self.grads = tf.gradients(ys=self.loss, xs=self.e_params)
                    self.train = self.opt.apply_gradients(zip(self.grads, self.e_params))
        """),
        # TF1 compute_gradients returns (grad, var) pairs: nothing to compare
        Valid("""
            import tensorflow as tf
            opt = tf.train.GradientDescentOptimizer(0.1)
            grads_and_vars = opt.compute_gradients(loss, [W, b])
            train_op = opt.apply_gradients(grads_and_vars)
        """),
        # trainable_variables() and the TRAINABLE_VARIABLES collection are the same list
        Valid("""
            import tensorflow as tf
            grads = tf.gradients(loss, tf.trainable_variables())
            clipped = [tf.clip_by_norm(g, 1.0) for g in grads]
            train_op = opt.apply_gradients(zip(clipped, tf.get_collection(tf.GraphKeys.TRAINABLE_VARIABLES)))
        """),
        # GAN done right: each model's gradients go to its own variables
        Valid("""
            import keras
            import tensorflow as tf
            def train_step(generator, discriminator, g_opt, d_opt, noise, real):
                with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
                    fake = generator(noise, training=True)
                    g_loss = -tf.reduce_mean(discriminator(fake, training=True))
                    d_loss = tf.reduce_mean(discriminator(fake, training=True)) - tf.reduce_mean(discriminator(real, training=True))
                g_grads = g_tape.gradient(g_loss, generator.trainable_variables)
                d_grads = d_tape.gradient(d_loss, discriminator.trainable_variables)
                g_opt.apply_gradients(zip(g_grads, generator.trainable_variables))
                d_opt.apply_gradients(zip(d_grads, discriminator.trainable_variables))
        """),
        # Keras 3 optimizer.apply with the same list; an unrelated `.apply`
        Valid("""
            import keras
            import tensorflow as tf
            def train_step(model, opt, x, y, df):
                with tf.GradientTape() as tape:
                    loss = keras.losses.mean_squared_error(y, model(x, training=True))
                grads = tape.gradient(loss, model.trainable_variables)
                opt.apply(grads, model.trainable_variables)
                df.apply(len, 1)
        """),
        # gradient and apply in different functions: not paired
        Valid("""
            import tensorflow as tf
            def compute(model, x):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(model(x))
                return tape.gradient(loss, model.variables)
            def apply(opt, grads, model):
                opt.apply_gradients(zip(grads, model.trainable_variables))
        """),
        # lists of unknown provenance (parameters): not assumed different
        Valid("""
            import tensorflow as tf
            def step(model, opt, x, var_list, params):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(model(x))
                grads = tape.gradient(loss, var_list)
                opt.apply_gradients(zip(grads, params))
        """),
        # the same literal list
        Valid("""
            import tensorflow as tf
            W = tf.Variable(tf.zeros([3, 1]))
            b = tf.Variable(tf.zeros([1]))
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.matmul(x, W) + b)
            grads = tape.gradient(loss, [W, b])
            opt.apply_gradients(zip(grads, [W, b]))
        """),
    ]
    INVALID = [
        Invalid(
            """
            import tensorflow as tf
            model = tf.keras.Sequential([tf.keras.layers.Dense(4), tf.keras.layers.BatchNormalization()])
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(model(x, training=True))
            grads = tape.gradient(loss, model.variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
            """,
            line=6,
            message="`model.variables`",
        ),
        # GAN: generator gradients applied to the discriminator (through names bound once)
        Invalid(
            """
            import keras
            import tensorflow as tf
            generator = keras.Sequential([keras.layers.Dense(8)])
            discriminator = keras.Sequential([keras.layers.Dense(1)])
            gen_vars = generator.trainable_variables
            disc_vars = discriminator.trainable_variables
            with tf.GradientTape() as tape:
                g_loss = -tf.reduce_mean(discriminator(generator(noise)))
            g_grads = tape.gradient(g_loss, gen_vars)
            g_opt.apply_gradients(zip(g_grads, disc_vars))
            """,
            line=10,
            message="different",
        ),
        # TF1: gradients of one scope applied to another
        Invalid(
            """
            import tensorflow.compat.v1 as tf
            actor_params = tf.get_collection(tf.GraphKeys.TRAINABLE_VARIABLES, scope='actor')
            critic_params = tf.get_collection(tf.GraphKeys.TRAINABLE_VARIABLES, scope='critic')
            grads = tf.gradients(loss, actor_params)
            train_op = tf.train.AdamOptimizer(1e-3).apply_gradients(zip(grads, critic_params))
            """,
            line=5,
            message="`critic_params`",
        ),
        # literal lists in a different order, through a zip bound to a name
        Invalid(
            """
            import tensorflow as tf
            def train_step(x):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_sum(tf.matmul(x, W) + b)
                grads = tape.gradient(loss, [W, b])
                grads = [tf.clip_by_norm(g, 1.0) for g in grads]
                pairs = zip(grads, [b, W])
                opt.apply_gradients(pairs)
            """,
            line=7,
        ),
        # Keras 3 optimizer.apply with another model's variables
        Invalid(
            """
            import keras
            import tensorflow as tf
            def train_step(encoder, decoder, opt, x):
                with tf.GradientTape() as tape:
                    loss = keras.ops.mean(keras.ops.square(decoder(encoder(x)) - x))
                grads = tape.gradient(loss, encoder.trainable_variables)
                opt.apply(grads, decoder.trainable_variables)
            """,
            line=7,
            message="`decoder.trainable_variables`",
        ),
        # global variables vs trainable variables
        Invalid(
            """
            import tensorflow as tf
            grads = tf.gradients(loss, tf.global_variables())
            train_op = opt.apply_gradients(zip(grads, tf.trainable_variables()))
            """,
            line=3,
            message="`tf.global_variables()`",
        ),
    ]

    # -- static ---------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if not isinstance(func, cst.Attribute):
            return
        method = func.attr.value
        if method == "apply_gradients":
            arg = get_arg(node, "grads_and_vars", 0)
            if arg is None:
                return
            zipped = self._zip_of(arg.value, node)
            if zipped is None:
                return
            grads_expr, vars_expr, zip_at = zipped
        elif method == "apply":
            # Keras 3: optimizer.apply(grads, trainable_variables)
            grads_arg = get_arg(node, "grads", 0)
            vars_arg = get_arg(node, "trainable_variables", 1)
            if grads_arg is None or vars_arg is None:
                return
            grads_expr, vars_expr, zip_at = grads_arg.value, vars_arg.value, node
        else:
            return
        origin = self._grads_origin(grads_expr, zip_at, 0)
        if origin is None:
            return
        grad_call, grad_list = origin
        ctx = self.ctx
        if ctx.scope_of(grad_call) is not ctx.scope_of(node):
            return
        a = self._describe(grad_list, grad_call, 0)
        b = self._describe(vars_expr, zip_at, 0)
        if not self._differ(a, b):
            return
        grad_line = ctx.line(grad_call)
        a_text = self._short(grad_list)
        b_text = self._short(vars_expr)
        kind = "owners" if a[0] == b[0] == "attr" and a[1] != b[1] else a[0]
        self.report(
            vars_expr,
            f"gradients computed w.r.t. `{a_text}` (line {grad_line}) are applied to a different list, "
            f"`{b_text}`: zip pairs the i-th gradient with the i-th variable, so gradients land on the "
            "wrong variables or are silently dropped; use the same variable list for both calls",
            data={"grad_line": grad_line, "apply_line": ctx.line(node), "kind": kind},
        )

    def _short(self, expr: cst.CSTNode) -> str:
        text = _WS.sub(" ", self.ctx.code(expr)).strip()
        return text if len(text) <= 60 else text[:57] + "..."

    def _zip_of(self, expr: cst.BaseExpression, at: cst.CSTNode, depth: int = 0):
        """(grads, vars, where) of ``zip(grads, vars)``, ``list(zip(...))`` or a name bound to one."""
        if depth > 3:
            return None
        if isinstance(expr, cst.Call):
            func = expr.func
            if (
                isinstance(func, cst.Name)
                and func.value in ("list", "tuple")
                and len(expr.args) == 1
                and not expr.args[0].star
            ):
                return self._zip_of(expr.args[0].value, at, depth + 1)
            if isinstance(func, cst.Name) and func.value == "zip" and len(expr.args) == 2:
                if any(a.star or a.keyword is not None for a in expr.args):
                    return None
                b = self.ctx.binding(func, at)
                if b is not None and b.kind != "import" and b.index >= 0:
                    return None  # a local `zip`
                return expr.args[0].value, expr.args[1].value, at
            return None
        if isinstance(expr, (cst.Name, cst.Attribute)):
            b = self.ctx.binding(expr, at)
            if b is not None and b.kind in ("assign", "annassign") and b.value is not None:
                return self._zip_of(b.value, b.node, depth + 1)
        return None

    def _gradient_list(self, call: cst.Call) -> cst.BaseExpression | None:
        """The variable list of a ``tape.gradient`` / ``tf.gradients`` call (``ctx.gradient_calls``)."""
        gc = self.ctx.gradient_call(call)
        if gc is None or gc.kind not in ("tape", "tf_gradients"):
            return None
        return gc.sources

    def _grads_origin(self, expr: cst.BaseExpression, at: cst.CSTNode, depth: int):
        """(gradient call, its variable list) that produced ``expr``, looking through clipping."""
        if depth > 5:
            return None
        ctx = self.ctx
        if isinstance(expr, cst.Call):
            lst = self._gradient_list(expr)
            if lst is not None:
                return expr, lst
            qn = ctx.call_name(expr)
            if qn in tfapi.names("gradients", "clip_none_safe") and expr.args:
                return self._grads_origin(expr.args[0].value, at, depth + 1)
            func = expr.func
            if isinstance(func, cst.Name) and func.value in ("list", "tuple") and len(expr.args) == 1:
                return self._grads_origin(expr.args[0].value, at, depth + 1)
            return None
        if isinstance(expr, cst.Subscript):
            # tf.clip_by_global_norm(grads, 5.0)[0]
            inner = expr.value
            if (
                isinstance(inner, cst.Call)
                and ctx.call_name(inner) in tfapi.names("gradients", "clip_none_safe")
                and inner.args
            ):
                return self._grads_origin(inner.args[0].value, at, depth + 1)
            return None
        if isinstance(expr, (cst.ListComp, cst.GeneratorExp)):
            it = expr.for_in.iter
            if isinstance(it, cst.Call) and isinstance(it.func, cst.Name) and it.func.value == "zip" and it.args:
                it = it.args[0].value
            return self._grads_origin(it, at, depth + 1)
        if isinstance(expr, (cst.Name, cst.Attribute)):
            b = ctx.binding(expr, at)
            if b is None or b.value is None:
                return None
            if b.kind in ("assign", "annassign"):
                return self._grads_origin(b.value, b.node, depth + 1)
            if b.kind == "unpack":
                # grads, _ = tf.clip_by_global_norm(grads, 5.0): only the first element
                stmt = b.node
                if isinstance(stmt, cst.Assign) and len(stmt.targets) == 1:
                    t = stmt.targets[0].target
                    if isinstance(t, (cst.Tuple, cst.List)) and t.elements:
                        first = t.elements[0].value
                        if dotted(first) == dotted(expr) and isinstance(b.value, cst.Call):
                            if ctx.call_name(b.value) in tfapi.names("gradients", "clip_none_safe") and b.value.args:
                                return self._grads_origin(b.value.args[0].value, b.node, depth + 1)
        return None

    # -- list descriptors ---------------------------------------------------------------
    def _norm(self, node: cst.CSTNode) -> str:
        return _WS.sub("", self.ctx.code(node))

    def _describe(self, expr: cst.BaseExpression, at: cst.CSTNode, depth: int) -> Descriptor:
        ctx = self.ctx
        if depth > 5:
            return ("opaque", "deep:" + self._norm(expr))
        if isinstance(expr, cst.Attribute):
            kind = self._attr_kind(expr.attr.value)
            if kind is not None:
                return ("attr", self._owner_key(expr.value, at), kind)
        if isinstance(expr, (cst.Name, cst.Attribute)):
            name = dotted(expr)
            b = ctx.binding(expr, at)
            if b is None or name is None:
                return ("opaque", "name:" + self._norm(expr))
            key = (b.scope, name)
            bound_once = len(ctx.bindings.get(key, [])) == 1
            if b.kind in ("assign", "annassign") and b.value is not None and bound_once:
                inner = self._describe(b.value, b.node, depth + 1)
                if inner[0] != "opaque":
                    return inner
            return ("opaque", f"name:{name}@{b.index}")
        if isinstance(expr, cst.Call):
            return self._describe_call(expr, at)
        if isinstance(expr, (cst.List, cst.Tuple)):
            items = []
            for el in expr.elements:
                if isinstance(el, cst.StarredElement):
                    return ("opaque", "list:" + self._norm(expr))
                items.append(self._item_key(el.value, at))
            return ("list", tuple(items))
        if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.Add):
            left = self._describe(expr.left, at, depth + 1)
            right = self._describe(expr.right, at, depth + 1)
            parts: list[Descriptor] = []
            for p in (left, right):
                parts.extend(p[1] if p[0] == "concat" else [p])
            return ("concat", tuple(parts))
        return ("opaque", "expr:" + self._norm(expr))

    @staticmethod
    def _attr_kind(attr: str) -> str | None:
        if attr in tfapi.names("gradients", "all_variable_attrs"):
            return "all"
        if attr in tfapi.names("gradients", "trainable_attrs"):
            return "trainable"
        if attr in tfapi.names("gradients", "non_trainable_attrs"):
            return "non_trainable"
        return None

    def _owner_key(self, owner: cst.BaseExpression, at: cst.CSTNode) -> str:
        """Identity of a model/layer: its constructor call when known, else its normalized code."""
        ctx = self.ctx
        cur, where = owner, at
        for _ in range(6):
            if not isinstance(cur, (cst.Name, cst.Attribute)):
                break
            b = ctx.binding(cur, where)
            if b is None or b.value is None or b.kind not in ("assign", "annassign"):
                break
            if len(ctx.bindings.get((b.scope, b.name), [])) != 1:
                break
            cur, where = b.value, b.node
        if isinstance(cur, cst.Call) and cur in ctx.index:
            return f"call@{ctx.index[cur]}"
        return "code:" + self._norm(cur)

    def _item_key(self, item: cst.BaseExpression, at: cst.CSTNode) -> str:
        ctx = self.ctx
        if isinstance(item, (cst.Name, cst.Attribute)):
            b = ctx.binding(item, at)
            if b is not None and b.index >= 0:
                return f"{dotted(item) or self._norm(item)}@{b.index}"
        return self._norm(item)

    def _describe_call(self, call: cst.Call, at: cst.CSTNode) -> Descriptor:
        ctx = self.ctx
        qn = ctx.call_name(call)
        if qn in tfapi.names("gradients", "global_variable_calls") or qn in tfapi.names(
            "gradients", "trainable_variable_calls"
        ):
            kind = "all" if qn in tfapi.names("gradients", "global_variable_calls") else "trainable"
            scope = get_arg(call, "scope", 0)
            return ("global", kind, self._norm(scope.value) if scope is not None else "")
        if qn in tfapi.names("gradients", "get_collection") and call.args:
            key_arg = get_arg(call, "key", 0)
            if key_arg is None:
                return ("opaque", "call:" + self._norm(call))
            key = key_arg.value
            key_qn = ctx.qualname(key)
            s = string_value(key)
            if key_qn in tfapi.names("gradients", "global_collection_keys") or s in tfapi.names(
                "gradients", "global_collection_strings"
            ):
                kind = "all"
            elif key_qn == tfapi.table("gradients", "trainable_collection_key") or s == "trainable_variables":
                kind = "trainable"
            else:
                return ("opaque", "call:" + self._norm(call))
            scope = get_arg(call, "scope", 1)
            return ("global", kind, self._norm(scope.value) if scope is not None else "")
        func = call.func
        if (
            isinstance(func, cst.Name)
            and func.value in ("list", "tuple")
            and len(call.args) == 1
            and not call.args[0].star
        ):
            return self._describe(call.args[0].value, at, 1)
        return ("opaque", "call:" + self._norm(call))

    @staticmethod
    def _differ(a: Descriptor, b: Descriptor) -> bool:
        """True only when both lists are known and certainly different."""
        if a == b or not (_known(a) and _known(b)):
            return False
        if a[0] != b[0]:
            return False  # e.g. a model's variables vs a global collection: may coincide
        if a[0] == "concat":
            if len(a[1]) != len(b[1]):
                return False
            return all(x[0] == y[0] for x, y in zip(a[1], b[1]))
        return True

    # -- confirmation -------------------------------------------------------------------
    OBSERVES = ("gradient_call", "apply_gradients")
    CONFIRMS = [
        Traced(
            (
                event("gradient_call", 10, variables=[{"name": "a/w", "grad": "ok"}, {"name": "b/w", "grad": "ok"}]),
                event("apply_gradients", 12, api="apply_gradients", variables=["b/w", "a/w"], none=[]),
            ),
            evidence="position 0: the gradient of `a/w` (line 10) is applied to `b/w`",
            line=12,
            data={"grad_line": 10, "apply_line": 12, "kind": "owners"},
        ),
        Traced(
            (
                event("gradient_call", 10, variables=[{"name": "a/w", "grad": "ok"}]),
                event("apply_gradients", 12, api="apply_gradients", variables=["a/w", "b/w"], none=[]),
            ),
            evidence="differentiates 1 variable(s) but apply_gradients at line 12 receives 2",
            line=12,
            data={"grad_line": 10, "apply_line": 12, "kind": "owners"},
        ),
    ]
    REFUTES = [
        Traced(
            (
                event("gradient_call", 10, variables=[{"name": "a/w", "grad": "ok"}, {"name": "b/w", "grad": "ok"}]),
                event("apply_gradients", 12, api="apply_gradients", variables=["a/w", "b/w"], none=[]),
            ),
            evidence="same 2 variable(s) in the same order",
            line=12,
            data={"grad_line": 10, "apply_line": 12, "kind": "owners"},
        )
    ]
    INCONCLUSIVE = [
        Traced(  # Keras 3 short names cannot tell two models' kernels apart
            (
                event("gradient_call", 10, variables=[{"name": "kernel", "grad": "ok"}]),
                event("apply_gradients", 12, api="apply_gradients", variables=["kernel"], none=[]),
            ),
            evidence="cannot tell",
            line=12,
            data={"grad_line": 10, "apply_line": 12, "kind": "owners"},
        ),
        Traced(
            (event("gradient_call", 10, variables=[{"name": "a/w", "grad": "ok"}]),),
            evidence="no apply_gradients call was recorded at line 12",
            line=12,
            data={"grad_line": 10, "apply_line": 12, "kind": "owners"},
        ),
    ]

    @classmethod
    def confirm(cls, finding, trace) -> Outcome | None:
        data = finding.data or {}
        grad_line, apply_line = data.get("grad_line"), data.get("apply_line", finding.line)
        if grad_line is None:
            return inconclusive("the gradient call of this list is not known")
        grads = trace.events_at("gradient_call", grad_line)
        applies = trace.events_at("apply_gradients", apply_line)
        if not grads:
            return inconclusive(f"no gradient call was recorded at line {grad_line}")
        if not applies:
            return inconclusive(f"no apply_gradients call was recorded at line {apply_line}")
        a = [v.get("name") for v in grads[0].get("variables", [])]
        b = list(applies[0].get("variables", []))
        if None in a or None in b or not a:
            return inconclusive("the traced variables have no names to compare")
        if a == b:
            if data.get("kind") == "owners" and not any("/" in str(n) for n in a):
                return inconclusive(
                    f"the {len(a)} variable names ({a[0]}...) are too short to tell two models apart: cannot tell"
                )
            return refuted(f"both lists hold the same {len(a)} variable(s) in the same order")
        if len(a) != len(b):
            extra = [n for n in a if n not in b][:5] or [n for n in b if n not in a][:5]
            return confirmed(
                f"the gradient call at line {grads[0].get('line')} differentiates {len(a)} variable(s) but "
                f"apply_gradients at line {applies[0].get('line')} receives {len(b)}"
                + (f"; not in both: {', '.join(map(str, extra))}" if extra else "")
            )
        i = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
        return confirmed(
            f"position {i}: the gradient of `{a[i]}` (line {grads[0].get('line')}) is applied to `{b[i]}` "
            f"(line {applies[0].get('line')}); {sum(x != y for x, y in zip(a, b))} of {len(a)} pairs differ"
        )
