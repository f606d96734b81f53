"""The program model: facts about one file, computed once and queried by every rule.

- ``context``: the :class:`FileContext`, built in one libcst traversal (bindings, qualified
  names, tapes);
- ``calls``: a call's arguments bound to a function's parameters;
- ``models``: which layers a model holds (through call sites, ``self`` attributes and sibling
  modules of the project: ``siblings``);
- ``gradients``: every gradient request (``ctx.gradient_calls``);
- ``targets``: whether an expression reaches a gradient target, and which one
  (``gradient_targets(ctx).reaches`` / ``.reaching``): the one reachability query;
- ``modes``: the execution mode (eager/graph) per scope;
- ``dataflow``: branches a helper never runs under the constants it is called with;
- ``producers``: where a value comes from (softmax, sigmoid, logits...);
- ``weights``: weight initializers and the layers they feed.

Rules import from here.
"""

from tflint_grad.analysis.calls import bind_arguments
from tflint_grad.analysis.context import (
    Binding,
    FileContext,
    ScopeNode,
    TapeBlock,
    dependencies,
    dependency_names,
    dotted,
    get_arg,
    has_keyword,
    is_update_ops_collection,
    mentions_update_ops,
    number,
    string_value,
    tf1_batch_norm_training,
)
from tflint_grad.analysis.dataflow import is_identity_activation, never_runs
from tflint_grad.analysis.gradients import GradientCall
from tflint_grad.analysis.models import ModelInfo, loss_like_name, model_attribute_owners, modelish_name
from tflint_grad.analysis.modes import mode_at
from tflint_grad.analysis.targets import GradientTargets, gradient_targets

__all__ = [
    "Binding",
    "FileContext",
    "GradientCall",
    "GradientTargets",
    "ModelInfo",
    "ScopeNode",
    "TapeBlock",
    "bind_arguments",
    "dependencies",
    "dependency_names",
    "dotted",
    "get_arg",
    "gradient_targets",
    "has_keyword",
    "is_identity_activation",
    "is_update_ops_collection",
    "loss_like_name",
    "mentions_update_ops",
    "mode_at",
    "model_attribute_owners",
    "modelish_name",
    "never_runs",
    "number",
    "string_value",
    "tf1_batch_norm_training",
]
