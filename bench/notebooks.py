"""CPU time of the static pass on the development corpora's notebooks.

    python bench/notebooks.py [--corpora DIR] [--runs N] [--base DIR]

Reads every ``.ipynb`` under ``--corpora`` (default ``~/.cache/tflint-corpora``, see
``bench/precision/run.py``) and reports the best of ``--runs`` CPU times (``process_time``:
robust to other processes on a shared machine) of two phases, in one process each:

* ``load``: bytes to the notebook's Python (JSON decoding, IPython's cell transformer or the
  fallback: ``tflint_grad.cells``);
* ``lint``: ``engine.lint_bytes`` (load + parse + all rules).

Each is measured with IPython's transformer and with the fallback (``TFLINT_GRAD_IPYTHON=0``),
and, with ``--base DIR``, for another checkout of tflint-grad (e.g. ``git worktree add DIR
<commit>``) to compare before/after on the same machine, interleaved.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

DEFAULT_CORPORA = Path(os.environ.get("TFLINT_CORPORA", Path.home() / ".cache" / "tflint-corpora"))

CHILD = r"""
import sys, time
from pathlib import Path
from tflint_grad.engine import lint_bytes
from tflint_grad.sourcefile import load
paths = [p for p in sorted(Path(sys.argv[1]).rglob("*.ipynb")) if ".ipynb_checkpoints" not in p.parts]
raws = [(str(p), p.read_bytes()) for p in paths]
runs = int(sys.argv[2])
for name, raw in raws[:20]:
    lint_bytes(raw, name)  # warm up: imports, the rule registry
out = []
for phase, fn in (("load", load), ("lint", lambda n, r: lint_bytes(r, n))):
    best = None
    for _ in range(runs):
        t = time.process_time()
        for name, raw in raws:
            fn(name, raw)
        dt = time.process_time() - t
        best = dt if best is None else min(best, dt)
    out.append(f"{phase} {best:.3f}")
print(len(raws), sum(len(r) for _, r in raws), *out)
"""


def measure(pythonpath: str | None, corpora: Path, runs: int, ipython: bool) -> tuple[int, int, float, float]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    env["TFLINT_GRAD_IPYTHON"] = "1" if ipython else "0"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(corpora), str(runs)], env=env, capture_output=True, text=True, check=True
    )
    count, size, _, load, _, lint = proc.stdout.split()
    return int(count), int(size), float(load), float(lint)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--base", help="another tflint-grad checkout to compare with (put on PYTHONPATH)")
    args = parser.parse_args()
    variants = [("this tree, IPython", None, True), ("this tree, fallback", None, False)]
    if args.base:
        variants.insert(0, (f"{args.base}", args.base, True))
    print("| variant | notebooks | MB | load (s CPU) | lint (s CPU) |\n|---|---:|---:|---:|---:|")
    for name, path, ipython in variants:
        count, size, load, lint = measure(path, args.corpora, args.runs, ipython)
        print(f"| {name} | {count} | {size / 1e6:.1f} | {load:.2f} | {lint:.2f} |")


if __name__ == "__main__":
    main()
