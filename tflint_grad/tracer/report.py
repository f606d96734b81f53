"""What a trace run reports back (plain JSON), and helpers the rule oracles use.

The harness writes one JSON object::

    {"status": "finished" | "stopped" | "error" | "timeout" | "memory" | "killed" | "crashed" | "unavailable",
     "reason": str | None,           # human readable: "script stopped at line 12: FileNotFoundError: data.csv"
     "error_line": int | None,       # line of the script where it raised, if any
     "steps": int,                   # training steps counted
     "step_limit": int,
     "executed_lines": [int, ...],   # lines of the user script that ran
     "events": [{"kind": str, "line": int, ...}, ...],
     "tf_version": str, "keras": str, "duration": float,
     "sandbox": [str, ...]}          # kernel protections active: "Landlock ABI 7: writes", "reads", "signals"...

Every event has ``kind``, ``line`` (1-based line in the USER SCRIPT: the innermost
frame of the script on the call stack when recorded, or from ``op.traceback`` for
graph ops) and ``step`` (training steps counted so far). Events recorded once per site
(gradient calls, optimizers, layer calls, clips, log/logits/sqrt inputs, update ops) also
carry ``count``: how many times that site fired. This list is the single reference for
event fields; how the probes obtain each event is in :mod:`tflint_grad.tracer.probes`.
Kinds:

- ``gradient_call``: one per gradient call site (first execution; ``count`` = times it ran).
  ``api``: "tape.gradient" | "tf.gradients" | "compute_gradients" | "minimize";
  ``variables``: [{"name", "trainable": bool, "shape": [int], "grad": "none"|"zero"|"ok", "norm": float|None}]
  in the order passed (per variable also ``units_identical``: bool, all columns of a >=2-D
  gradient are equal; ``nonfinite: true`` when the gradient holds NaN/Inf, its ``norm`` is
  then None; ``kind: "tensor"`` when the source is a tensor, not a variable); ``blocked``:
  [{"variable", "op", "op_type", "line"}] for None/zero
  gradients whose path to the target is cut by an op (Cast to int, ArgMax, Round, Sign,
  StopGradient...); ``disconnected``: [variable names with no path to the target at all];
  ``evaluated``: bool (gradient values known: eager, or TF1 after the first run that computed
  them); ``unwatched``: [non-trainable variables an auto-watching tape never watched: None by
  construction, e.g. BN moving statistics]; ``unclassified``: [eager None gradients with no op
  recording to classify them].
- ``apply_gradients``: ``api`` (which optimizer method), ``variables``: [names], ``none``:
  [names whose gradient was None].
- ``layer_call``: a Keras BatchNormalization/Dropout layer ran. ``line`` is the script line
  of the OUTERMOST script frame (the ``model(x)`` call in the training loop); ``layer``,
  ``class``, ``training``: true | false | null (the value the layer resolved),
  ``in_tape``: bool (a GradientTape was recording), ``keras``: which Keras ("keras3" or
  "tf_keras"), ``trainable``: bool (BN only), ``training_kind: "tensor"`` (a symbolic flag:
  ``training`` is then null), ``stack``: the script lines of every script frame on the call stack,
  innermost first (a layer inside a subclassed ``call`` or a ``tf.function`` is attributed to the
  ``model(x)`` line through it).
- ``moving_stats``: one per BatchNormalization layer at the end of the run; ``layer``,
  ``line`` (where the layer was created), ``before``/``after``: {"moving_mean": [first values],
  "moving_variance": [...]}, ``changed``: bool, ``keras: true`` for Keras layers read in eager
  mode (graph variables are read in the script's session before the first train step and
  when it closes).
- ``initializer``: a weight got its initial value. ``variable``, ``shape``, ``fan_in``,
  ``std`` (measured), ``mean`` (measured), ``init`` (initializer class), ``init_config``
  (its scalar config: stddev, mean...), ``init_line`` (where the initializer object was
  created), ``layer`` (Keras layer name).
- ``layer_grad_norms``: at initialization on one traced batch (TF1: mean over the first
  ``batches`` train batches), for the gradient call at
  ``line``: ``norms``: [{"variable", "norm"}] for weight variables (ndim >= 2) in creation
  order; ``counterfactual``: the same with those weights re-drawn fan-in scaled (He for
  ReLU, Glorot otherwise); ``first_ratio``: counterfactual first-layer norm / actual;
  ``flagged``: [{"variable", "redraw": "he"|"glorot"}] the weights found tiny and re-drawn.
- ``optimizer_created``: ``class``; one event per (line, class, step), ``count`` = instances
  created there during that step.
- ``clip_none``: a per-tensor clip call received None (it raises); ``function``.
- ``assign_op``: TF1 graph: an assign op created by the script; ``op``, ``op_type``,
  ``target``, ``ran``: bool (an ancestor of anything the script fetched), ``moving``: bool,
  ``before``/``after``: first values of the target before the first train step and at the
  end (when the script's session could read it).
- ``update_ops``: TF1 graph, one per train op: ``train_op``, ``update_ops``: [names],
  ``ancestors``: bool (every update op is an ancestor of the train op),
  ``fetched_together``: bool (fetched in the same Session.run), ``fetched``: bool (the
  train op was fetched at all), ``api`` (the optimizer method that built it).
- ``update_ops_collected``: ``size`` (UPDATE_OPS size when get_collection ran at ``line``),
  ``size_at_first_step``.
- ``nonfinite``: first NaN/Inf: ``op``, ``op_type``, ``where``: "loss"|"gradient"|"forward",
  ``value``: "NaN"|"Inf". Eager: ``op``/``line`` name the first recorded op whose output is
  not finite (``where="forward"``), else a Sqrt/Log/Div that received a zero; graph: the
  fetched loss or gradient tensor (``line`` where the loss op was created, or the
  gradient call).
- ``log_input``: a Log op at ``line`` whose input comes from ``input_op_type`` (Softmax,
  Sigmoid...), ``clipped``: bool; ``op``; ``complement: true`` for ``log(1 - p)`` (``input_op_type``
  is then ``p``'s producer); ``differentiated``: bool, the Log lies on the path of a
  gradient the script took (absent when no gradient target was known for its graph/tape).
- ``logits_input``: a loss with logits at ``line`` whose logits come from ``input_op_type``;
  ``function`` (the loss function called).
- ``sqrt_input``: a Sqrt op at ``line`` (TFG403): ``op``, ``chain``: [op types feeding it,
  nearest first, through pass-through ops, e.g. ["Sum", "Square", "Sub"] or ["Maximum",
  "Sum", "Square", "Sub"]], ``input_op_type`` (``chain[0]``), ``squares``: bool (the
  radicand is a Sum/Mean of Square/SquaredDifference/Pow/x*x, a sum of such terms, or a
  square), ``clipped``: bool (a ClipByValue/Maximum or ``+ constant`` guards it). Eager
  (ops recorded by the first tapes) also: ``zeros``/``size`` (exact zeros among the
  radicand's values) and ``zero_step`` (the step they were seen, when ``zeros`` > 0);
  ``differentiated`` as for ``log_input``.
- ``model_layers``: a model called by the script at ``line`` (outermost script frame), first call:
  ``model`` (its name), ``layers``/``classes``: the BatchNormalization/Dropout layers found in
  it, recursively through nested models and layers (empty: it holds none).
- ``probe_failed``: a probe raised; ``probe`` (its name), ``error``. The observations it owns
  are incomplete, so the oracles that rely on them say inconclusive, never refuted.

The TypedDict of every kind is in :mod:`tflint_grad.tracer.events` (TF-free).
"""

from __future__ import annotations

from tflint_grad.tracer.events import OK_STATUSES, TraceResult

__all__ = ["OK_STATUSES", "TraceResult"]
