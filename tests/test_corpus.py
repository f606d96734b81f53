"""Zero internal errors on real code: a sample of the installed keras/tensorflow sources.

The benchmark script (bench/run.py) runs the same check over every file.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path

import pytest

from tflint_grad.engine import lint_bytes


def _package_files(name: str) -> list[Path]:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations)))
    return sorted(root.rglob("*.py"))


def corpus(sample: int, seed: int = 0) -> list[Path]:
    files: list[Path] = []
    for pkg in ("keras", "tf_keras", "tensorflow"):
        files.extend(_package_files(pkg))
    random.Random(seed).shuffle(files)
    return files[:sample]


FILES = corpus(400)


@pytest.mark.skipif(not FILES, reason="needs keras/tensorflow sources installed (the trace extra)")
def test_no_internal_errors_on_real_sources():
    errors = []
    tfg000 = []
    for path in FILES:
        result = lint_bytes(path.read_bytes(), str(path))
        errors.extend(result.errors)
        tfg000.extend(f for f in result.findings if f.code == "TFG000")
    assert not errors, "\n".join(f"{e.path} [{e.rule}] {e.message}\n{e.traceback}" for e in errors[:5])
    # every TFG000 on these packages must name a real syntax problem CPython agrees with
    import ast

    for f in tfg000:
        with pytest.raises(SyntaxError):
            ast.parse(Path(f.path).read_text())
