from __future__ import annotations

import libcst as cst

from tflint_grad import tfapi
from tflint_grad.analysis import get_arg, string_value
from tflint_grad.analysis.producers import flow, loop_ancestors, short
from tflint_grad.analysis.targets import gradient_targets
from tflint_grad.rule import Invalid, Outcome, Rule, Traced, Valid, confirmed, inconclusive, refuted
from tflint_grad.tracer.events import event

_DEFS = (cst.FunctionDef, cst.Lambda, cst.ClassDef)


# Gradient requests that make a training step (not `compile`, which only configures `fit`).
_STEP_REQUESTS = frozenset({"tape", "tf_gradients", "minimize", "compute_gradients"})


class OptimizerInLoop(Rule):
    """An optimizer constructed inside the training loop or the train-step function.

    ## What it does
    Flags the construction of an optimizer (`tf.keras.optimizers.Adam(...)`,
    `tf.train.AdamOptimizer(...)`, `tf.optimizers.SGD(...)`...), and
    `model.compile(optimizer="adam")` with a string (which constructs one), when it runs once
    per training step:
    - inside the body of a `for`/`while` loop that also trains in the same iteration
      (`tape.gradient`, `apply_gradients`, `minimize`, `compute_gradients`, `fit`,
      `train_on_batch`, or a call of a local function that does);
    - inside a train-step function: a function that calls `tape.gradient` / `apply_gradients` /
      `minimize` outside any loop of its own, and is called from a loop, decorated with
      `tf.function`, named `*step*`, or not called in the file (a Keras `train_step`). In TF1
      graph code (and for `tf.train.*Optimizer`) such a function builds the train op once, so
      it is flagged only when it is called from a loop.

    A TF1 graph-mode loop that runs nothing (no `sess.run`, `.run()`, `.eval()` in its body)
    only builds ops: the multi-GPU tower loop (`compute_gradients` per tower, one
    `apply_gradients` after the loop) is not a training loop.

    ## Why is this bad?
    An optimizer keeps state between steps: Adam's first and second moment estimates,
    momentum accumulators, its iteration count (used for bias correction and learning-rate
    schedules). A fresh optimizer every step starts from zero each time: Adam's bias-corrected
    first step has magnitude ≈ learning rate for every weight regardless of the gradient's
    scale, momentum never builds up, and in TF1 every iteration also adds new slot variables
    and ops to the graph (which then need initializing). Training is noisy, slow or diverges,
    with no error.

    ## Example
    ```python
    for x, y in dataset:
        optimizer = tf.keras.optimizers.Adam(1e-3)
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
    ```

    Use instead:
    ```python
    optimizer = tf.keras.optimizers.Adam(1e-3)
    for x, y in dataset:
        ...
    ```

    Not flagged: construction at module level, in `__init__`/`build`, before the loop in the
    function that runs it, in a loop whose body also builds a fresh model (cross-validation
    folds, hyper-parameter sweeps) or resets the graph/session, and in a loop that trains only
    in a nested loop (one optimizer per run, e.g. a learning-rate sweep).

    ## Confirmation
    `--confirm` counts the `optimizer_created` events at the flagged line per training step:
    `confirmed` when instances were created in more than one training step ("3 Adam instances
    created in 3 training steps: slot variables reset each step"); `refuted` when, over at least
    two training steps, one instance was created, or all were created within one step (one per
    GPU tower while the graph is built).
    """

    code = "TFG502"
    name = "optimizer-in-loop"
    severity = "warning"
    requires = ("optimizer", "Optimizer")

    VALID = [
        # module level
        Valid("""
            import tensorflow as tf
            optimizer = tf.keras.optimizers.Adam(1e-3)
            for x, y in dataset:
                with tf.GradientTape() as tape:
                    loss = loss_fn(y, model(x, training=True))
                grads = tape.gradient(loss, model.trainable_variables)
                optimizer.apply_gradients(zip(grads, model.trainable_variables))
        """),
        # __init__, and a train function that creates it before its loop
        Valid("""
            import tensorflow as tf
            class Agent:
                def __init__(self):
                    self.opt = tf.keras.optimizers.Adam(1e-3)
                def train_step(self, x):
                    with tf.GradientTape() as tape:
                        loss = self.loss(x)
                    self.opt.apply_gradients(zip(tape.gradient(loss, self.vars), self.vars))
            def train(model, data):
                opt = tf.keras.optimizers.SGD(0.1)
                for x, y in data:
                    with tf.GradientTape() as tape:
                        loss = tf.reduce_mean(tf.square(model(x) - y))
                    opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
            train(model, data)
        """),
        # a fresh model per iteration (cross-validation folds)
        Valid("""
            from tensorflow import keras
            for train_idx, val_idx in folds:
                model = keras.Sequential([keras.layers.Dense(10)])
                model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
                model.fit(x[train_idx], y[train_idx], epochs=5)
        """),
        # a learning-rate sweep: the training happens in a nested loop (one optimizer per run)
        Valid("""
            import tensorflow as tf
            for lr in [1e-2, 1e-3]:
                opt = tf.keras.optimizers.Adam(lr)
                for step in range(100):
                    with tf.GradientTape() as tape:
                        loss = compute_loss()
                    opt.apply_gradients(zip(tape.gradient(loss, params), params))
        """),
        # TF1: a fresh graph per iteration
        Valid("""
            import tensorflow as tf
            for trial in range(5):
                tf.reset_default_graph()
                train_op = tf.train.AdamOptimizer(0.01).minimize(build_loss())
                with tf.Session() as sess:
                    sess.run(train_op)
        """),
        # TF1: a graph-building method that creates the train op once
        Valid("""
            import tensorflow as tf
            class PolicyGradient:
                def __init__(self):
                    self._build_net()
                def _build_net(self):
                    loss = tf.reduce_mean(self.neg_log_prob * self.tf_vt)
                    self.train_op = tf.train.AdamOptimizer(self.lr).minimize(loss)
        """),
        # a loop that builds optimizers for several networks, without training
        Valid("""
            import tensorflow as tf
            optimizers = []
            for net in nets:
                optimizers.append(tf.keras.optimizers.Adam(1e-4))
        """),
        # a helper that builds and compiles a fresh model (k-fold validation): compile is not a train step
        Valid("""
            from tensorflow import keras
            def build_model():
                model = keras.Sequential([keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])
                model.compile(optimizer="rmsprop", loss="mse", metrics=["mae"])
                return model
            for i in range(k):
                model = build_model()
                model.fit(partial_train_data, partial_train_targets, epochs=num_epochs, verbose=0)
        """),
        # TF1 multi-GPU towers (issue 9): the loop only builds ops, compute_gradients per tower and
        # one apply_gradients after the loop
        Valid("""
            import tensorflow as tf
            tower_grads = []
            for i in range(num_gpus):
                with tf.device('/gpu:%d' % i):
                    loss_op = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(logits=conv_net(X[i]), labels=Y[i]))
                    optimizer = tf.train.AdamOptimizer(learning_rate=learning_rate)
                    grads = optimizer.compute_gradients(loss_op)
                    tower_grads.append(grads)
            train_op = optimizer.apply_gradients(average_gradients(tower_grads))
            with tf.Session() as sess:
                for step in range(num_steps):
                    sess.run(train_op, feed_dict={X: batch_x, Y: batch_y})
        """),
    ]
    INVALID = [
        Invalid(
            """
            import tensorflow as tf
            for x, y in dataset:
                optimizer = tf.keras.optimizers.Adam(1e-3)
                with tf.GradientTape() as tape:
                    loss = loss_fn(y, model(x, training=True))
                grads = tape.gradient(loss, model.trainable_variables)
                optimizer.apply_gradients(zip(grads, model.trainable_variables))
            """,
            line=3,
            message="inside the training loop",
        ),
        # TF1: a new AdamOptimizer and train op every iteration
        Invalid(
            """
            import tensorflow as tf
            with tf.Session() as sess:
                for i in range(1000):
                    train_op = tf.train.AdamOptimizer(0.01).minimize(loss)
                    sess.run(train_op, feed_dict={x: xs, y: ys})
            """,
            line=4,
            message="AdamOptimizer",
        ),
        # the train-step function
        Invalid(
            """
            import tensorflow as tf
            @tf.function
            def train_step(x, y):
                optimizer = tf.keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
                grads = tape.gradient(loss, model.trainable_variables)
                optimizer.apply_gradients(zip(grads, model.trainable_variables))
            """,
            line=4,
            message="train-step function `train_step`",
        ),
        # a helper step called from the loop
        Invalid(
            """
            from tensorflow.keras.optimizers import RMSprop
            import tensorflow as tf
            def update(model, x, y):
                opt = RMSprop(1e-3)
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(tf.square(model(x) - y))
                opt.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
            for x, y in batches:
                update(model, x, y)
            """,
            line=4,
        ),
        # re-compiling with a string every epoch
        Invalid(
            """
            from tensorflow import keras
            model = keras.Sequential([keras.layers.Dense(1)])
            for epoch in range(10):
                model.compile(optimizer="adam", loss="mse")
                model.fit(x, y, epochs=1)
            """,
            line=4,
            message="compile",
        ),
        # a loop calling a local train function in the same iteration
        Invalid(
            """
            import tensorflow as tf
            def step(opt, x):
                with tf.GradientTape() as tape:
                    loss = f(x)
                opt.apply_gradients(zip(tape.gradient(loss, params), params))
            while True:
                opt = tf.keras.optimizers.Adam()
                step(opt, next(it))
            """,
            line=7,
        ),
    ]

    def __init__(self, ctx, options=None) -> None:
        super().__init__(ctx, options)
        self.flow = flow(ctx)
        self._own_step: dict[int, cst.Call | None] = {}

    # -- static ---------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        what = self._constructs(node)
        if what is None:
            return
        target, label, cls_name, compiled = what
        where = self._step_context(
            node, graph_mode=self.ctx.is_tf1 or cls_name.endswith(tfapi.table("optimizers", "class_suffix"))
        )
        if where is None:
            return
        ctx = self.ctx
        kind, container, step = where
        stmt = ctx.statement_of(node)
        step_text = f"`{short(ctx, step.func, 40)}` at line {ctx.line(step)}"
        if kind == "loop":
            keyword = "for" if isinstance(container, cst.For) else "while"
            place = (
                f"inside the training loop (`{keyword}` at line {ctx.line(container)}, which trains with {step_text})"
            )
            every = "every iteration"
            advice = "compile once, before the loop" if compiled else "create it once, before the loop"
        else:
            place = f"inside the train-step function `{container.name.value}` (it calls {step_text})"
            every = "every call"
            advice = "create it once (module level or `__init__`) and reuse it"
        verb = "builds a new optimizer" if compiled else "is constructed"
        _, _, end_line, _ = ctx.range(stmt)
        self.report(
            target,
            f"{label} {verb} {place}: {every} gets a fresh optimizer whose slot variables (Adam moments, "
            "momentum) and iteration count start from zero again, so its state never accumulates; " + advice,
            data={"class": cls_name, "stmt_line": ctx.line(stmt), "stmt_end_line": end_line},
        )

    def _constructs(self, call: cst.Call) -> tuple[cst.CSTNode, str, str, bool] | None:
        ctx = self.ctx
        qn = ctx.call_name(call)
        if qn is not None:
            if "." not in qn:
                return None
            module, last = qn.rsplit(".", 1)
            if module in tfapi.names("optimizers", "modules") and (
                last in tfapi.names("optimizers", "classes") or last.endswith(tfapi.table("optimizers", "class_suffix"))
            ):
                return call, f"`{short(ctx, call, 50)}`", last, False
            return None
        func = call.func
        method, keyword, position = tfapi.table("optimizers", "compile_method")
        if isinstance(func, cst.Attribute) and func.attr.value == method:
            arg = get_arg(call, keyword, position)
            s = string_value(arg.value) if arg is not None else None
            if s:
                return arg.value, f"`{short(ctx, func, 30)}(optimizer={ctx.code(arg.value).strip()})`", s, True  # type: ignore[union-attr]
        return None

    # -- where the construction runs -------------------------------------------------------------
    def _step_context(self, node: cst.CSTNode, graph_mode: bool):
        ctx = self.ctx
        fn = None
        for a in ctx.ancestors(node):
            if isinstance(a, cst.FunctionDef):
                fn = a
                break
            if isinstance(a, (cst.Lambda, cst.ClassDef)):
                return None
        if fn is not None and fn.name.value in tfapi.names("optimizers", "setup_methods"):
            return None
        loops = loop_ancestors(ctx, node)
        for loop in loops:
            if self._fresh_start(loop):
                return None
            step = self._trains_in(loop, node)
            if step is not None:
                if graph_mode and not self._fits(step) and not self._runs_graph(loop):
                    # TF1 graph building (one tower per GPU): the loop creates ops once, nothing runs
                    # in it, and each optimizer keeps its own slots for the whole training
                    return None
                return "loop", loop, step
        if fn is not None and not loops:
            step = self._own_step_call(fn)
            if step is not None and self._called_per_step(fn, graph_mode):
                return "function", fn, step
        return None

    def _is_step_call(self, call: cst.Call, *, in_loop: bool, follow: bool) -> bool:
        ctx = self.ctx
        func = call.func
        req = gradient_targets(ctx).request(call)
        if req is not None and req.kind in _STEP_REQUESTS:
            return True
        if isinstance(func, cst.Attribute):
            attr = func.attr.value
            if attr in tfapi.names("optimizers", "step_methods"):  # apply_gradients
                return True
            if in_loop and attr in tfapi.names("optimizers", "fit_methods"):
                return True
        if follow:
            target = None
            if isinstance(func, cst.Name):
                b = ctx.binding(func, call)
                if b is not None and b.kind == "def" and isinstance(b.node, cst.FunctionDef):
                    target = b.node
            elif isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self":
                cls = next((a for a in ctx.ancestors(call) if isinstance(a, cst.ClassDef)), None)
                if cls is not None:
                    target = next(
                        (
                            s
                            for s in cls.body.body
                            if isinstance(s, cst.FunctionDef) and s.name.value == func.attr.value
                        ),
                        None,
                    )
            if target is not None and self._own_step_call(target) is not None:
                return True
        return False

    @staticmethod
    def _fits(call: cst.Call) -> bool:
        func = call.func
        return isinstance(func, cst.Attribute) and func.attr.value in tfapi.names("optimizers", "fit_methods")

    def _runs_graph(self, loop: cst.CSTNode) -> bool:
        """Whether the loop body runs the graph (``sess.run``, ``op.run()``, ``t.eval()``)."""
        run = tfapi.names("optimizers", "graph_run_methods")
        return any(
            isinstance(c.func, cst.Attribute) and c.func.attr.value in run
            for c in self.ctx.calls_in(loop.body)  # type: ignore[attr-defined]
        )

    def _trains_in(self, loop: cst.CSTNode, node: cst.CSTNode) -> cst.Call | None:
        """A training call that runs in the same iteration of ``loop`` as ``node``."""
        ctx = self.ctx
        body = loop.body  # type: ignore[attr-defined]
        for c in ctx.calls_in(body):
            ok = True
            for a in ctx.ancestors(c):
                if a is loop:
                    break
                if isinstance(a, _DEFS) or (isinstance(a, (cst.For, cst.While)) and not ctx.contains(a, node)):
                    ok = False
                    break
            if ok and self._is_step_call(c, in_loop=True, follow=True):
                return c
        return None

    def _own_step_call(self, fn: cst.FunctionDef) -> cst.Call | None:
        """A step call in ``fn`` itself, outside any loop and nested def."""
        key = id(fn)
        if key in self._own_step:
            return self._own_step[key]
        ctx = self.ctx
        found = None
        self._own_step[key] = None
        for c in ctx.calls_in(fn.body):
            if ctx.scope_of(c) is not fn or loop_ancestors(ctx, c):
                continue
            if self._is_step_call(c, in_loop=False, follow=False):
                found = c
                break
        self._own_step[key] = found
        return found

    def _called_per_step(self, fn: cst.FunctionDef, graph_mode: bool) -> bool:
        """Whether ``fn`` runs once per training step. In TF1 graph code a function calling
        ``minimize`` builds the train op once, unless it is called from a loop."""
        ctx = self.ctx
        sites = [c for c in self.flow.calls_named(fn.name.value) if not ctx.contains(fn, c)]
        if graph_mode:
            return any(loop_ancestors(ctx, c) for c in sites)
        for d in fn.decorators:
            dec = d.decorator.func if isinstance(d.decorator, cst.Call) else d.decorator
            if ctx.qualname(dec) in tfapi.names("optimizers", "step_decorators"):
                return True
        if "step" in fn.name.value.lower():
            return True
        if not sites:
            return True  # called by a framework (Keras `train_step`) or from another module
        return any(loop_ancestors(ctx, c) for c in sites)

    def _fresh_start(self, loop: cst.CSTNode) -> bool:
        """The loop body resets the graph/session or builds a new model each iteration."""
        ctx = self.ctx
        fresh = tfapi.names("optimizers", "fresh_start")
        for n in ctx.descendants(loop.body):  # type: ignore[attr-defined]
            if type(n) is cst.Call and ctx.call_name(n) in fresh:
                return True
            if type(n) is cst.Assign and isinstance(n.value, cst.Call):
                if ctx.model_info(n.value, n).kind == "model":
                    return True
        return False

    # -- confirmation -------------------------------------------------------------------
    OBSERVES = ("optimizer_created",)
    CONFIRMS = [
        Traced(
            tuple(event("optimizer_created", 10, step=k, count=1, **{"class": "Adam"}) for k in range(5)),
            evidence="5 Adam instances created in 5 steps (a new one in 5 different training steps)",
            data={"class": "Adam", "stmt_line": 10, "stmt_end_line": 10},
        )
    ]
    REFUTES = [
        Traced(
            (event("optimizer_created", 10, count=1, **{"class": "Adam"}),),
            evidence="a single Adam instance was created during the 5 traced steps",
            data={"class": "Adam", "stmt_line": 10, "stmt_end_line": 10},
        ),
        Traced(  # one per GPU tower while the graph is built: all before the first step, none per step
            (event("optimizer_created", 10, step=0, count=2, **{"class": "AdamOptimizer"}),),
            evidence="all 2 AdamOptimizer instances were created within step 0",
            data={"class": "AdamOptimizer", "stmt_line": 10, "stmt_end_line": 10},
        ),
    ]
    INCONCLUSIVE = [
        Traced(  # one step only: one instance is what the bug would also give
            (event("optimizer_created", 10, count=1, **{"class": "Adam"}),),
            evidence="only 1 training step ran",
            steps=1,
            data={"class": "Adam", "stmt_line": 10, "stmt_end_line": 10},
        ),
        Traced((), evidence="no optimizer creation was recorded", data={"stmt_line": 10, "stmt_end_line": 10}),
    ]

    @classmethod
    def confirm(cls, finding, trace) -> Outcome | None:
        lo = finding.data.get("stmt_line", finding.line)
        hi = max(finding.data.get("stmt_end_line", finding.end_line), finding.end_line)
        events = trace.events_at("optimizer_created", lo, hi)
        if not events:
            return inconclusive(f"no optimizer creation was recorded at line {lo}")
        n = sum(int(e.get("count") or 1) for e in events)
        name = events[0].get("class") or finding.data.get("class") or "optimizer"
        steps = sorted({int(e.get("step") or 0) for e in events})
        if len(steps) > 1:  # the consequence: a fresh optimizer (fresh slots) in several training steps
            return confirmed(
                f"{n} {name} instances created in {trace.steps or len(steps)} steps (a new one in {len(steps)} "
                "different training steps): slot variables reset each step"
            )
        if trace.steps < 2:
            return inconclusive(
                f"only {trace.steps} training step ran: one {name} instance per step is what the loop would also create"
            )
        if n > 1:
            return refuted(
                f"all {n} {name} instances were created within step {steps[0]} (e.g. one per tower while the "
                f"graph is built), none in the {trace.steps} later training steps: no slot variables are reset"
            )
        return refuted(f"a single {name} instance was created during the {trace.steps} traced steps")
