"""The program model: facts about one file, computed once and queried by every rule.

``context`` builds the :class:`FileContext` in one libcst traversal (bindings, qualified names,
tapes, models); ``producers`` follows where a value comes from (softmax, sigmoid, logits...);
``gradients`` recognises every gradient request (``ctx.gradient_calls``) and answers whether an
expression reaches a gradient target (``reaches_gradient``); ``weights`` indexes weight initializers and the layers they feed. Rules import from here.
"""

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
from tflint_grad.analysis.gradients import GradientCall, reaches_gradient
from tflint_grad.analysis.models import ModelInfo, loss_like_name, model_attribute_owners, modelish_name

__all__ = [
    "Binding",
    "FileContext",
    "GradientCall",
    "ModelInfo",
    "ScopeNode",
    "TapeBlock",
    "dependencies",
    "dependency_names",
    "dotted",
    "get_arg",
    "has_keyword",
    "is_update_ops_collection",
    "loss_like_name",
    "mentions_update_ops",
    "model_attribute_owners",
    "modelish_name",
    "number",
    "reaches_gradient",
    "string_value",
    "tf1_batch_norm_training",
]
