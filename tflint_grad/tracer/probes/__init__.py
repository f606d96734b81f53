"""Probes: patches installed in the traced child that record what happened while the script trained.

``install(rec, tf, tf1=..., steps=...)`` runs after TensorFlow is imported and before the
user's script; ``finalize(rec)`` runs after the script stopped (normally, at the step limit
or by an exception). Event kinds and ALL their fields are documented in one place,
:mod:`tflint_grad.tracer.report`: add a field there when a probe starts emitting it.

Rules every probe follows:

- A probe never changes what the script computes: each patch calls the original with the
  original arguments (materialising a ``zip`` iterator into a list is the one liberty),
  every probe body runs in ``try/except`` and records nothing when it fails, and any TF
  work the probes do themselves runs under ``_quiet()`` so that the other patches (and the
  harness's step counters, which only count train-op fetches / user calls) ignore it.
  Extra ``Session.run`` work is either piggy-backed on a run the script makes anyway
  (fetching tensors that are already ancestors of the fetched ops: nothing extra executes)
  or, for the TFG301 counterfactual, done before the first train step on a snapshot of the
  variables that is restored afterwards.
- Expensive analysis happens once per call site (graph build time in TF1, first call in
  eager); later calls only bump ``count`` and run cheap finiteness checks.

How each event is obtained (Keras 3 / tf_keras / TF1):

- ``gradient_call``: ``GradientTape.gradient``, ``tf.gradients`` (every module reference),
  TF1 ``Optimizer.compute_gradients``/``minimize`` (the pairs of the inner compute_gradients).
  Eager: values are there (norm, none/zero). Graph (TF1): None-ness at build time; norms and
  "zero" from the first ``Session.run`` whose fetches depend on the gradients (the tensors are
  added to that run's fetches: nothing extra executes). None/zero classified by path analysis
  (graph.py): TF1 and tf.function graphs on the real graph, eager tapes on the ops recorded by an
  op callback while the first tapes recorded.
- ``apply_gradients``: Keras 3 ``BaseOptimizer.apply_gradients``/``apply``, tf_keras
  ``_BaseOptimizer``/``OptimizerV2.apply_gradients``, TF1 ``Optimizer.apply_gradients`` (direct
  calls only).
- ``layer_call``: BN/Dropout ``call`` (the argument Keras resolved; tf_keras: also
  ``_get_training_value``/learning phase).
- ``moving_stats``: Keras layers in eager mode: values at ``build`` and at the end;
  graph variables named moving_mean/moving_variance: read in the script's session before the
  first train step and when the session closes (or at the end).
- ``initializer``: Keras ``add_weight`` (eager), ``tf.Variable`` created by the script (eager),
  TF1 trainable variables read at the first train step (initializer objects are tracked from
  their creation line).
- ``layer_grad_norms``: TF1: mean over the first min(steps, 5) train batches; when weights are
  flagged tiny (rms < 0.1 x Glorot std, random) the counterfactual re-draws them (He when a ReLU
  follows, else Glorot; own RNG), evaluates the same gradient tensors with the same feed, and
  restores every variable it or the gradients touched, before the script's own run. Eager: the
  first call; the counterfactual replays the recorded ops with re-drawn weights (assign, restore).
- ``assign_op`` / ``update_ops`` / ``update_ops_collected``: TF1 graphs, ancestors over inputs +
  control inputs of everything ``Session.run`` fetched; optimizer-internal and Saver-restore
  assigns are skipped; the targets' values come from the session snapshots above.
- ``optimizer_created``: the optimizers' ``__init__`` (Keras 3, tf_keras, TF1).
- ``clip_none``, ``logits_input``: wrappers of the clip / ``*_with_logits`` functions.
- ``log_input``, ``sqrt_input``: Log and Sqrt ops of TF1/tf.function graphs (after the run, or
  when their gradient is taken) and of the ops recorded by the first eager tapes (graph.py walks
  their inputs: ``feeding_type``, ``sqrt_radicand``).
- ``nonfinite``: eager: loss and gradient values of each ``tape.gradient`` (culprit op from the
  recording); TF1: loss values the script fetched and the piggy-backed gradient values.
"""

from __future__ import annotations

from typing import Any

from tflint_grad.tracer.probes.base import ProbeContext, _debug, _PostImportFinder, probe
from tflint_grad.tracer.probes.finalize import FinalizeProbes
from tflint_grad.tracer.probes.functions import FunctionProbes
from tflint_grad.tracer.probes.gradients import GradientProbes
from tflint_grad.tracer.probes.initializers import InitializerProbes
from tflint_grad.tracer.probes.keras import KerasProbes
from tflint_grad.tracer.probes.logs import LogProbes
from tflint_grad.tracer.probes.session import SessionProbes

__all__ = ["ProbeContext", "_PostImportFinder", "finalize", "install", "probe"]


class _Probes(
    GradientProbes,
    SessionProbes,
    FunctionProbes,
    InitializerProbes,
    KerasProbes,
    LogProbes,
    FinalizeProbes,
    ProbeContext,
):
    """Every probe, one object: the concerns live in their modules, the state in ProbeContext."""

    # -- install ---------------------------------------------------------------------
    def install(self) -> None:
        for step in (
            self._install_tape,
            self._install_gradients,
            self._install_tf1_optimizer,
            self._install_session,
            self._install_functions,
            self._install_initializers,
            self._install_variables,
            self._install_keras_hooks,
        ):
            try:
                step()
            except Exception:
                _debug(step.__name__)


_state: _Probes | None = None


def install(rec: Any, tf: Any, *, tf1: bool, steps: int) -> None:
    """Patch TensorFlow / Keras so that ``rec`` receives the events of report.py."""
    global _state
    try:
        p = _Probes(rec, tf, tf1=tf1, steps=steps)
    except Exception:
        _debug("probes init")
        return
    _state = p
    p.install()


def finalize(rec: Any) -> None:
    """Emit the end-of-run events (moving statistics, assign ops, update ops, log inputs)."""
    p = _state
    if p is None or p.rec is not rec:
        return
    p.finalize()
