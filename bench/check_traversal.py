"""Checks the analysis speed-ups of bench/PROFILE.md against the slow, obvious way.

``python bench/check_traversal.py [--positions] [--findings] FILE_OR_DIR...`` (default: the
installed keras, tf_keras and tensorflow packages). For every file that libcst parses:

- it builds the ``FileContext`` twice, once with the collector's own walk (trivia nodes
  kept, ``analysis._SKIP_TRIVIA = False``) and once with ``module.visit`` (what the
  collector used before), and compares the node order, parents, scopes, subtree ends,
  bindings, imports and the other indexes by node identity; and once more as the engine
  builds it (trivia left out, fields that can only hold trivia not read): the same nodes
  as the full walk minus trivia;
- ``--positions``: every node's range from the fast position computation, and from the lazy
  one (per top-level statement, first lines from CPython's ``ast``), against
  ``MetadataWrapper.resolve(PositionProvider)``;
- ``--findings``: the findings (codes, positions, messages, fixes, data) and internal errors
  of ``lint_bytes`` with trivia nodes (whitespace, comments, punctuation) left out of the
  ``FileContext`` (the default) against those with them in.

Prints the mismatches; exit 1 if any.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from tflint_grad.analysis import context as analysis
from tflint_grad.analysis.positions import Positions, _FastPositions


def _package_files() -> list[str]:
    out = []
    for name in ("keras", "tf_keras", "tensorflow"):
        spec = importlib.util.find_spec(name)
        for loc in (spec.submodule_search_locations or []) if spec else []:
            for folder, dirs, files in os.walk(loc):
                dirs.sort()
                out.extend(os.path.join(folder, f) for f in sorted(files) if f.endswith(".py"))
    return out


def _files(paths: list[str]) -> list[str]:
    if not paths:
        return _package_files()
    out = []
    for p in paths:
        if os.path.isdir(p):
            for folder, dirs, files in os.walk(p):
                dirs.sort()
                out.extend(os.path.join(folder, f) for f in sorted(files) if f.endswith(".py"))
        else:
            out.append(p)
    return out


def _findings(raw: bytes, path: str, skip: bool):
    import json

    from tflint_grad.engine import lint_bytes

    analysis._SKIP_TRIVIA = skip
    try:
        r = lint_bytes(raw, path)
    finally:
        analysis._SKIP_TRIVIA = True
    out = []
    for f in r.findings:
        d = f.to_dict()
        d["data"] = f.data
        out.append(json.dumps(d, sort_keys=True, default=repr))
    return out, [(e.rule, e.message) for e in r.errors]


def _old_context(module: cst.Module, text: str, path: str) -> analysis.FileContext:
    walk = analysis._Collector.walk
    analysis._Collector.walk = lambda self, root: root.visit(self)  # type: ignore[method-assign]
    try:
        return analysis.FileContext(module, text, path)
    finally:
        analysis._Collector.walk = walk  # type: ignore[method-assign]


def _ids(mapping: dict) -> dict:
    return {id(k): id(v) for k, v in mapping.items()}


def compare(new: analysis.FileContext, old: analysis.FileContext) -> list[str]:
    problems = []
    if [id(n) for n in new.nodes] != [id(n) for n in old.nodes]:
        problems.append(f"node order differs ({len(new.nodes)} vs {len(old.nodes)} nodes)")
    for attr in ("parents", "scope_map"):
        if _ids(getattr(new, attr)) != _ids(getattr(old, attr)):
            problems.append(f"{attr} differ")
    if {id(k): v for k, v in new.end.items()} != {id(k): v for k, v in old.end.items()}:
        problems.append("subtree ends differ")
    if {id(k): v for k, v in new.index.items()} != {id(k): v for k, v in old.index.items()}:
        problems.append("indexes differ")

    def bindings(ctx):
        return {
            (id(s), n): [(b.name, b.index, id(b.node), id(b.value), b.kind, id(b.scope)) for b in bs]
            for (s, n), bs in ctx.bindings.items()
        }

    if bindings(new) != bindings(old):
        problems.append("bindings differ")
    if new.imports != old.imports:
        problems.append("imports differ")
    if {(id(s), i): id(e) for (s, i), e in new.unpack_index.items()} != {
        (id(s), i): id(e) for (s, i), e in old.unpack_index.items()
    }:
        problems.append("unpack_index differs")
    if {k: [id(f) for f in v] for k, v in new.functions.items()} != {
        k: [id(f) for f in v] for k, v in old.functions.items()
    }:
        problems.append("functions differ")
    if {k: id(v) for k, v in new.classes.items()} != {k: id(v) for k, v in old.classes.items()}:
        problems.append("classes differ")
    if [id(w) for w in new._with_nodes] != [id(w) for w in old._with_nodes]:
        problems.append("with nodes differ")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="*")
    ap.add_argument("--positions", action="store_true", help="also compare every node's position")
    ap.add_argument("--findings", action="store_true", help="also compare the findings with and without trivia nodes")
    args = ap.parse_args(argv)
    files = _files(args.paths)
    checked = skipped = bad = lazy_fallbacks = 0
    for path in files:
        if args.findings:
            with open(path, "rb") as f:
                raw = f.read()
            a, b = _findings(raw, path, True), _findings(raw, path, False)
            if a != b:
                bad += 1
                print(f"{path}: findings differ without trivia nodes:")
                for line in sorted(set(a[0]) ^ set(b[0])):
                    print("    " + line[:300])
                if a[1] != b[1]:
                    print(f"    internal errors: {a[1]} vs {b[1]}")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            module = cst.parse_module(text)
        except Exception:
            skipped += 1
            continue
        analysis._SKIP_TRIVIA = False
        try:
            new = analysis.FileContext(module, text, path)
        except RecursionError:
            new = None
        finally:
            analysis._SKIP_TRIVIA = True
        try:
            old = _old_context(module, text, path)
        except RecursionError:
            old = None
        if new is None or old is None:
            if (new is None) != (old is None):
                print(f"{path}: {'new' if new is None else 'old'} walk hit the recursion limit, the other did not")
                bad += 1
            else:
                skipped += 1
            continue
        problems = compare(new, old)
        lean = analysis.FileContext(module, text, path)  # trivia left out (the default)
        if lean.nodes != [n for n in new.nodes if type(n) not in analysis._TRIVIA]:
            problems.append("the walk without trivia records other nodes than the full walk minus trivia")
        if args.positions and not problems:
            try:
                slow = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
                slow_t = {id(k): ((v.start.line, v.start.column), (v.end.line, v.end.column)) for k, v in slow.items()}
                fast = _FastPositions().compute(module)
                if {id(k): v for k, v in fast.items()} != slow_t:
                    problems.append("positions differ")
                lazy = Positions(module, text, new._top_statement)
                body = set(module.body)  # the module's header and footer lines have no statement
                if any(lazy[n] != slow_t[id(n)] for n in new.nodes if new._top_statement(n) in body):
                    problems.append("lazy positions differ")
                if lazy._whole:
                    lazy_fallbacks += 1
                    print(f"{path}: lazy positions fell back to the whole module")
            except RecursionError:
                pass
        checked += 1
        if problems:
            bad += 1
            print(f"{path}: " + "; ".join(problems))
    print(f"checked {checked} files ({skipped} skipped: unparseable or too deep for both), {bad} with differences")
    if args.positions:
        print(f"lazy positions fell back to the whole module in {lazy_fallbacks} files")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
