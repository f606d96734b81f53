"""Small per-file facts shared by the rules: analyses memoised on the :class:`FileContext`
(``memo``), and the file's TensorFlow/Keras aliases for fixes (argument binding: :mod:`~tflint_grad.analysis.calls`).

``memo(ctx, key, factory)`` builds an analysis once per file and keeps it on the context
(``FileContext.release`` drops it with the tree): the numerics rules share one
:class:`~tflint_grad.analysis.producers.Flow`, one weight index and one gradient-target index.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tflint_grad import tfapi
from tflint_grad.analysis.context import FileContext

T = TypeVar("T")

_SLOT = "_analyses"


def memo(ctx: FileContext, key: str, factory: Callable[[FileContext], T]) -> T:
    """The analysis ``key`` of this file, built by ``factory(ctx)`` on first use."""
    store = ctx.__dict__.setdefault(_SLOT, {})
    try:
        return store[key]
    except KeyError:
        value = store[key] = factory(ctx)
        return value


def tf_alias(ctx: FileContext) -> str | None:
    """The local name bound to the TensorFlow module (``tf``; ``tensorflow.compat.v1`` too)."""
    found = [local for local, full in ctx.imports.items() if "." not in local and tfapi.canonical(full) == "tf"]
    if "tf" in found:
        return "tf"
    return found[0] if found else None


def keras_alias(ctx: FileContext) -> str | None:
    """A prefix that reaches Keras (``keras``, ``tf.keras``) for fixes that write Keras names."""
    for local, full in ctx.imports.items():
        if "." not in local and tfapi.canonical(full) == "keras":
            return local
    tf = tf_alias(ctx)
    return f"{tf}.keras" if tf else None
