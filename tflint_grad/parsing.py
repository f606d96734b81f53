"""libcst's parser without per-node validation: the same tree, a quarter less time.

``cst.parse_module`` builds the tree from Python dataclasses whose ``__post_init__``
re-validates every node (``CSTNode._validate``: a parenthesis balanced, a keyword
spaced...). A tree the parser built from source text is valid by construction; libcst's own
``CSTNode.__post_init__`` says so ("it might make more sense to move validation work into
the visitor, which would allow us to avoid validating the tree when parsing a file"). On the
generated scripts of ``bench/run.py`` the validation is ~25 % of the parse, and the parse is
the largest single cost of a lint.

:func:`parse_module` turns the validation off for the duration of one parse (any thread's
parse: a counter under a lock, so concurrent parses never restore it early) and back on
after, also when the parse raises. Nodes built outside a parse (the fixes') are validated as
always.
"""

from __future__ import annotations

import threading

import libcst as cst

_VALIDATE = cst.CSTNode.__post_init__  # libcst's own, restored after every parse
_lock = threading.Lock()
_parsing = 0


def _no_validation(self: cst.CSTNode) -> None:
    return None


def parse_module(text: str) -> cst.Module:
    """``cst.parse_module(text)``: the same tree, and the same ``ParserSyntaxError``."""
    global _parsing
    with _lock:
        _parsing += 1
        if _parsing == 1:
            cst.CSTNode.__post_init__ = _no_validation  # type: ignore[method-assign]
    try:
        return cst.parse_module(text)
    finally:
        with _lock:
            _parsing -= 1
            if _parsing == 0:
                cst.CSTNode.__post_init__ = _VALIDATE  # type: ignore[method-assign]
