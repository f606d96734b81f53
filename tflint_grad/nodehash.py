"""libcst nodes hashed by CPython's identity hash, in C.

libcst gives every node class a ``__hash__`` written in Python that returns ``id(self)``
(a node is equal only to itself). The program model keys its indexes by node (document
order, parents, scopes, positions...), so one lint hashes nodes hundreds of thousands of
times, each time a Python call: about a sixth of a language-server re-lint of a 5,000-line
file, a tenth of a command-line run (``bench/PROFILE.md``). ``object.__hash__`` means the
same (identity) and runs in C.

:func:`use_identity_hash` is called first thing in tflint-grad's own processes: the command
line (its pool workers are forked from it) and the language server and its worker. An
object must not change its hash while it is a key in a dict, and at that point no node is
(importing libcst and the rules creates a handful of default field values, none hashed).
Where tflint-grad is a library (``tflint_grad.api``, the flake8 plugin), libcst is left as
it is: the host may hold nodes in its own dicts.
"""

from __future__ import annotations

import libcst as cst

_LIBCST_HASH = cst.CSTNode.__dict__["__hash__"]


def use_identity_hash() -> None:
    """Hash every libcst node class (and those defined later) with ``object.__hash__``."""
    todo: list[type] = [cst.CSTNode]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__dict__.get("__hash__") is _LIBCST_HASH:
            cls.__hash__ = object.__hash__  # type: ignore[method-assign,assignment]


def identity_hashed() -> bool:
    return cst.Name.__hash__ is object.__hash__
