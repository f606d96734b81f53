from __future__ import annotations

import libcst as cst

from tflint_grad import tfapi
from tflint_grad.analysis import dotted, get_arg, model_attribute_owners
from tflint_grad.evidence import inference_mode, layer_calls
from tflint_grad.rule import Invalid, Outcome, Rule, Traced, Valid, confirmed, inconclusive, refuted
from tflint_grad.tracer.events import event


class MisspelledTrainingKwarg(Rule):
    """A Keras model or layer is called with `trainable=`, `is_training=`, `train=` or `mode=` instead of `training=`.

    ## What it does
    Flags a call of a Keras model or layer *instance* (Sequential, functional,
    subclassed, `keras.applications`, a layer object) with one of the keyword
    arguments people write instead of `training=`: `trainable=`, `is_training=`,
    `train=`, `mode=`, `is_train=`, `phase_train=`. Constructors
    (`BatchNormalization(trainable=False)`), TF1 functional layers
    (`tf.layers.batch_normalization(x, trainable=...)`,
    `tf.contrib.layers.batch_norm(is_training=...)`) and local classes or functions
    whose own `call` / signature declares that parameter are not flagged.

    ## Why is this bad?
    Keras only understands `training=` as the mode flag of a call. Another keyword is
    passed on to the layer's `call`, which raises `TypeError: got an unexpected
    keyword argument`, or, when `call` takes `**kwargs`, is silently ignored: the
    model then runs with `training` unset, so BatchNormalization uses (and never
    updates) its moving statistics and Dropout is off (the answer in seed 004).

    ## Example
    ```python
    with tf.GradientTape() as tape:
        y = model(x, trainable=True)
    ```

    Use instead:
    ```python
    with tf.GradientTape() as tape:
        y = model(x, training=True)
    ```

    ## Fix safety
    Renaming the keyword to `training=` is safe: the call either raised or ignored the
    flag, and `training=` is what the keyword was meant to be. No fix is offered for
    `mode=` with a non-boolean value (`mode=ModeKeys.TRAIN`), nor when `training=` is
    already passed.

    ## Confirmation
    The call at the flagged line raises, or the BatchNormalization/Dropout layers it
    runs see `training` unset/false with a consequence (moving statistics unchanged, or the
    layers off while the tape recorded); `refuted` when they run in training mode.
    """

    code = "TFG204"
    name = "misspelled-training-kwarg"
    severity = "error"
    requires = ("train", "mode")

    VALID = [
        # constructors
        Valid("""
            import tensorflow as tf
            bn = tf.keras.layers.BatchNormalization(trainable=False)
            model = tf.keras.Sequential([tf.keras.layers.Dense(4, trainable=True), bn])
            y = model(x, training=True)
        """),
        # TF1 functional layers
        Valid("""
            import tensorflow as tf
            h = tf.layers.batch_normalization(x, trainable=False, training=is_training)
            h = tf.contrib.layers.batch_norm(h, is_training=is_training)
            h = tf.compat.v1.layers.dropout(h, rate=0.5, training=is_training)
        """),
        # a local class whose own call declares the parameter
        Valid("""
            import tensorflow as tf
            class Block(tf.keras.layers.Layer):
                def __init__(self):
                    super().__init__()
                    self.bn = tf.keras.layers.BatchNormalization()
                def call(self, x, is_training=False):
                    return self.bn(x, training=is_training)
            block = Block()
            y = block(x, is_training=True)
        """),
        # local functions taking is_training / mode
        Valid("""
            import tensorflow as tf
            def network(images, is_training):
                return tf.layers.batch_normalization(images, training=is_training)
            def model_fn(features, labels, mode):
                logits = network(features, is_training=mode == tf.estimator.ModeKeys.TRAIN)
            logits = network(x, is_training=True)
        """),
        # unknown callables that are not models
        Valid("""
            import tensorflow as tf
            from nets import resnet_v1
            def run(fn, x):
                return fn(x, mode="train")
            net, _ = resnet_v1.resnet_v1_50(x, is_training=True)
            data = load_split(path, train=True)
        """),
        # the correct keyword
        Valid("""
            import tensorflow as tf
            model = tf.keras.Sequential([tf.keras.layers.Dropout(0.5)])
            with tf.GradientTape() as tape:
                y = model(x, training=True)
        """),
    ]
    INVALID = [
        # the answer of seed 004
        Invalid(
            """
            import tensorflow as tf
            model = tf.keras.Sequential([
                tf.keras.layers.InputLayer(input_shape=(1,)),
                tf.keras.layers.BatchNormalization()
            ])
            with tf.GradientTape() as tape:
                y = model(x, trainable=True)
            """,
            line=7,
            message="`trainable=`",
            fixed="""
            import tensorflow as tf
            model = tf.keras.Sequential([
                tf.keras.layers.InputLayer(input_shape=(1,)),
                tf.keras.layers.BatchNormalization()
            ])
            with tf.GradientTape() as tape:
                y = model(x, training=True)
            """,
        ),
        # a layer instance, subclassed model without that parameter
        Invalid(
            """
            from tensorflow import keras
            class Net(keras.Model):
                def __init__(self):
                    super().__init__()
                    self.bn = keras.layers.BatchNormalization()
                def call(self, x, training=None):
                    return self.bn(x, is_training=training)
            net = Net()
            out = net(x, is_training=True)
            """,
            line=7,
            message="`is_training=`",
            count=2,
            fixed="""
            from tensorflow import keras
            class Net(keras.Model):
                def __init__(self):
                    super().__init__()
                    self.bn = keras.layers.BatchNormalization()
                def call(self, x, training=None):
                    return self.bn(x, training=training)
            net = Net()
            out = net(x, training=True)
            """,
        ),
        # mode= with a non-boolean value: flagged, no fix
        Invalid(
            """
            import tensorflow as tf
            encoder = tf.keras.applications.ResNet50(weights=None)
            feats = encoder(images, mode=tf.estimator.ModeKeys.TRAIN)
            """,
            line=3,
            message="`mode=`",
            fixed="""
            import tensorflow as tf
            encoder = tf.keras.applications.ResNet50(weights=None)
            feats = encoder(images, mode=tf.estimator.ModeKeys.TRAIN)
            """,
        ),
        # unknown content, but its variables are used: a Keras model
        Invalid(
            """
            import tensorflow as tf
            def train_step(model, x, y, opt):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(tf.square(model(x, train=True) - y))
                grads = tape.gradient(loss, model.trainable_variables)
                opt.apply_gradients(zip(grads, model.trainable_variables))
            """,
            line=4,
            message="assumed",
        ),
    ]

    def __init__(self, ctx, options=None) -> None:
        super().__init__(ctx, options)
        self._kwargs = tfapi.names("layers", "misspelled_training_kwargs")
        self._owners: dict[int, set[str]] = {}

    # -- static ---------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        bad = [a for a in node.args if a.keyword is not None and a.keyword.value in self._kwargs]
        if not bad:
            return
        ctx = self.ctx
        callee = node.func
        if not isinstance(callee, (cst.Name, cst.Attribute, cst.Call)):
            return
        if isinstance(callee, (cst.Name, cst.Attribute)) and ctx.qualname(callee) is not None:
            return  # a TF/Keras API function or a constructor
        try:
            info = ctx.model_info(callee, node)
        except RecursionError:
            return
        name = dotted(callee) if not isinstance(callee, cst.Call) else None
        shown = name or ctx.code(callee)
        assumed = ""
        if info.kind in ("model", "layer"):
            cls = self._local_class(callee, node)
            if cls is not None and any(self._declares(cls, a.keyword.value, set()) for a in bad):  # type: ignore[union-attr]
                return
            what = info.description
        elif info.kind == "unknown":
            if isinstance(callee, cst.Call) or ctx.is_tf1 or not self._plausible_model(name, node, bad):
                return
            reason = info.description
            prefix = f"`{shown}` is "
            if reason.startswith(prefix):
                reason = reason[len(prefix) :]
            what = "a callable whose definition is not visible"
            assumed = f" (assumed `{shown}` is a Keras model: {reason}, and its variables are used as a model's)"
        else:
            return
        training_given = get_arg(node, "training") is not None
        for arg in bad:
            kw = arg.keyword.value  # type: ignore[union-attr]
            self.report(
                arg,
                f"`{shown}` ({what}) is called with `{kw}=`, which is not Keras's mode flag{assumed}: Keras passes it on "
                "to `call`, which raises TypeError or ignores it, and the model runs with `training` unset "
                "(BatchNormalization in inference mode, Dropout off); use `training=`",
                fix=None if training_given else self._fix(arg),
                data={"call_line": ctx.line(node), "end_line": ctx.range(node)[2], "keyword": kw},
            )

    def _fix(self, arg: cst.Arg):
        kw = arg.keyword.value  # type: ignore[union-attr]
        v = arg.value
        if kw == "mode":
            booleanish = (isinstance(v, cst.Name) and v.value in ("True", "False")) or isinstance(v, cst.Comparison)
            d = dotted(v)
            booleanish = booleanish or bool(d and "train" in d.split(".")[-1].lower() and d.split(".")[-1] != "TRAIN")
            if not booleanish:
                return None
        return self.replace(arg.keyword, "training", f"Rename `{kw}=` to `training=`", "safe")  # type: ignore[arg-type]

    def _local_class(self, callee: cst.BaseExpression, at: cst.CSTNode) -> cst.ClassDef | None:
        """The local class whose instance ``callee`` is (`net = Net()`, `self(...)`)."""
        ctx = self.ctx
        if isinstance(callee, cst.Name) and callee.value == "self":
            return next((a for a in ctx.ancestors(at) if isinstance(a, cst.ClassDef)), None)
        v = ctx.value_of(callee, at)
        if isinstance(v, cst.Call) and isinstance(v.func, cst.Name):
            return ctx.classes.get(v.func.value)
        return None

    def _declares(self, cls: cst.ClassDef, keyword: str, seen: set[int]) -> bool:
        """``cls.call`` / ``cls.__call__`` (or a local base's) takes ``keyword`` or ``**kwargs``."""
        if id(cls) in seen:
            return False
        seen.add(id(cls))
        body = cls.body.body if isinstance(cls.body, cst.IndentedBlock) else []
        for stmt in body:
            if isinstance(stmt, cst.FunctionDef) and stmt.name.value in ("call", "__call__"):
                if stmt.params.star_kwarg is not None:
                    return True
                params = [*stmt.params.posonly_params, *stmt.params.params, *stmt.params.kwonly_params]
                if any(p.name.value == keyword for p in params):
                    return True
        for base in cls.bases:
            if isinstance(base.value, cst.Name):
                local = self.ctx.classes.get(base.value.value)
                if local is not None and self._declares(local, keyword, seen):
                    return True
        return False

    def _plausible_model(self, name: str | None, at: cst.CSTNode, bad: list[cst.Arg]) -> bool:
        """Unknown callee: flagged only when its variables are read as a model's in the same function."""
        if not name:
            return False
        scope = self.ctx.scope_of(at)
        owners = self._owners.get(id(scope))
        if owners is None:
            owners = model_attribute_owners(self.ctx, scope)
            self._owners[id(scope)] = owners
        return name in owners

    # -- confirmation -------------------------------------------------------------------
    OBSERVES = ("layer_call", "moving_stats")
    CONFIRMS = [
        Traced(
            (),
            evidence="raised: TypeError",
            data={"call_line": 10, "end_line": 10, "keyword": "trainig"},
            status="error",
            error_line=10,
            reason="TypeError: call() got an unexpected keyword argument 'trainig'",
        ),
        Traced(
            (event("layer_call", 10, layer="drop", training=None, in_tape=True, **{"class": "Dropout"}),),
            evidence="`trainig=` was ignored at line 10: Dropout `drop` ran with training=None",
            data={"call_line": 10, "end_line": 10, "keyword": "trainig"},
        ),
    ]
    REFUTES = [
        Traced(
            (event("layer_call", 10, layer="bn", training=True, in_tape=True, **{"class": "BatchNormalization"}),),
            evidence="ran in training mode",
            data={"call_line": 10, "end_line": 10, "keyword": "trainig"},
        )
    ]
    INCONCLUSIVE = [
        Traced((), evidence="no BatchNormalization/Dropout call", data={"call_line": 10, "end_line": 10}),
        Traced(
            (event("layer_call", 10, layer="drop", training=None, in_tape=False, **{"class": "Dropout"}),),
            evidence="no consequence",
            data={"call_line": 10, "end_line": 10, "keyword": "trainig"},
        ),
    ]

    @classmethod
    def confirm(cls, finding, trace) -> Outcome | None:
        line = finding.data.get("call_line", finding.line)
        end = finding.data.get("end_line", line)
        kw = finding.data.get("keyword", "?")
        if trace.error_line is not None and line <= trace.error_line <= end:
            return confirmed(
                f"the call at line {trace.error_line} raised: {trace.reason or 'an error'} (`{kw}=` is not a call argument)"
            )
        calls = layer_calls(trace, line, end)
        if not calls:
            return inconclusive(f"no BatchNormalization/Dropout call was observed at line {line}")
        unset = [e for e in calls if not e.get("training")]
        if not unset:
            return refuted(f"the layers called at line {line} ran in training mode")
        mode = inference_mode(trace, unset)
        evidence = f"`{kw}=` was ignored at line {line}: " + "; ".join(mode.parts)
        if mode.moves:
            evidence += "; " + "; ".join(mode.moves)
        if mode.updated_elsewhere:
            return inconclusive(evidence + " (the statistics are updated by another call in training mode)")
        if not mode.harmful:
            return inconclusive(
                evidence + " (no consequence observed: frozen layers, or outside a tape with no moving statistics read)"
            )
        return confirmed(evidence)
