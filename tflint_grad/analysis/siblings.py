"""Modules of the linted project that a file imports from (``from network import VGG16``).

A sibling is found by its dotted name relative to the importing file's folder or one of
its parents, never outside the working directory (the linted tree), parsed with libcst
(never imported: user code does not run) and cached for the run by path and mtime.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import libcst as cst

from tflint_grad import parsing, tfapi

if TYPE_CHECKING:
    from tflint_grad.analysis.context import FileContext

_MAX_BYTES = 1_000_000
_MAX_LEVELS = 5
_CACHE: dict[str, tuple[float, FileContext | None]] = {}


def _inside(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:
        return False


def find_module(importer: str, module: str) -> str | None:
    """The file of ``module`` (``a.b`` → ``a/b.py`` or ``a/b/__init__.py``) next to ``importer``
    or in one of its parent folders, inside the working directory."""
    if not module or module.split(".")[0] in tfapi.roots() or not importer or importer.startswith("<"):
        return None
    root = os.path.abspath(os.getcwd())
    folder = os.path.dirname(os.path.abspath(importer))
    rel = module.replace(".", os.sep)
    for _ in range(_MAX_LEVELS):
        if not _inside(folder, root):
            return None
        for cand in (os.path.join(folder, rel + ".py"), os.path.join(folder, rel, "__init__.py")):
            if os.path.isfile(cand) and os.path.abspath(cand) != os.path.abspath(importer):
                return cand
        if folder == root:
            return None
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent
    return None


def unchanged(depends: dict[str, list[int]]) -> bool:
    """Whether every sibling a cached result read still has the same mtime and size."""
    for path, (mtime, size) in depends.items():
        try:
            st = os.stat(path)
        except OSError:
            return False
        if st.st_mtime_ns != mtime or st.st_size != size:
            return False
    return True


def load(path: str) -> FileContext | None:
    """The program model of a sibling module (cached per run), or None when it cannot be read."""
    from tflint_grad.analysis.context import FileContext

    path = os.path.abspath(path)
    try:
        st = os.stat(path)
    except OSError:
        return None
    hit = _CACHE.get(path)
    if hit is not None and hit[0] == st.st_mtime:
        return hit[1]
    ctx = None
    if st.st_size <= _MAX_BYTES:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            ctx = FileContext(parsing.parse_module(text), text, path)
        except (OSError, UnicodeDecodeError, cst.ParserSyntaxError, RecursionError, ValueError):
            ctx = None
    _CACHE[path] = (st.st_mtime, ctx)
    return ctx


def resolve(ctx: FileContext, dotted_name: str) -> tuple[FileContext, str] | None:
    """``(sibling context, name in it)`` for an imported dotted name: ``network.VGG16`` (from
    ``from network import VGG16``) or ``nmt.Encoder`` (``import nmt`` then ``nmt.Encoder``)."""
    parts = dotted_name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        path = find_module(ctx.path, ".".join(parts[:cut]))
        if path is None:
            continue
        sib = load(path)
        try:
            st = os.stat(path)
            ctx.__dict__.setdefault("sibling_files", {})[os.path.abspath(path)] = [st.st_mtime_ns, st.st_size]
        except OSError:
            pass
        if sib is None:
            return None
        rest = parts[cut:]
        if len(rest) != 1:
            return None
        return sib, rest[0]
    return None
