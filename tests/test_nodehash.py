"""libcst nodes hashed in C in tflint-grad's own processes (tflint_grad/nodehash.py): the
same identity semantics, the same findings; a library host keeps libcst's own hash."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tflint_grad import api

ROOT = Path(__file__).resolve().parent.parent
SEEDS = sorted((ROOT / "examples" / "seeds").glob("*.py"))

CHILD = """
import json, sys
import libcst as cst
from tflint_grad.nodehash import identity_hashed, use_identity_hash
assert not identity_hashed()
use_identity_hash()
class Later(cst.Name):  # a node class defined after the switch gets it too
    pass
a, b = cst.Name("x"), cst.Name("x")
later = Later("y")
assert identity_hashed() and hash(a) == object.__hash__(a) and hash(later) == object.__hash__(later)
assert a != b and len({a, b, a, later}) == 3 and {a: 1}[a] == 1 and b not in {a: 1}
from tflint_grad import api
out = []
for path in sys.argv[1:]:
    findings, errors = api.lint_text(path, open(path).read())
    out.append([[f.code, f.line, f.column, f.end_line, f.end_column, f.message] for f in findings])
print(json.dumps(out))
"""


def test_identity_hash_keeps_identity_and_the_findings():
    here = []
    for path in SEEDS:
        findings, _ = api.lint_text(str(path), path.read_text())
        here.append([[f.code, f.line, f.column, f.end_line, f.end_column, f.message] for f in findings])
    assert any(here)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, *map(str, SEEDS)], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert json.loads(child.stdout) == here


def test_the_command_switches_but_a_library_host_does_not():
    probe = "import sys; from tflint_grad.cli import console; from tflint_grad import nodehash; "
    run = lambda code, *args: subprocess.run(  # noqa: E731
        [sys.executable, "-c", probe + code, *args], capture_output=True, text=True, cwd=ROOT
    )
    as_command = run("sys.argv[0] = 'tflint-grad'; console(); print(nodehash.identity_hashed())", "rules")
    assert as_command.stdout.strip().endswith("True")
    as_library = run(
        "from tflint_grad import api; api.lint_text('a.py', 'import tensorflow as tf\\n'); "
        "print(nodehash.identity_hashed())"
    )
    assert as_library.stdout.strip() == "False"
