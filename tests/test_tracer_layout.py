"""The traced child imports no parent-side module, and the probes are split by concern."""

from __future__ import annotations

import ast
from pathlib import Path

TRACER = Path(__file__).resolve().parent.parent / "tflint_grad" / "tracer"
CHILD = ["harness.py", "confine.py", "shims.py", "standins.py", "graph.py", "recorder.py", "protocol.py", "events.py"]
CHILD += [f"probes/{p.name}" for p in sorted((TRACER / "probes").glob("*.py"))]
# what the child may import from this project
ALLOWED = {
    "tflint_grad",  # the package itself: its __init__ holds the version only
    "tflint_grad.tracer",
    "tflint_grad.tracer.graph",
    "tflint_grad.tracer.recorder",
    "tflint_grad.tracer.protocol",
    "tflint_grad.tracer.events",
    "tflint_grad.tracer.shims",
    "tflint_grad.tracer.standins",
    "tflint_grad.tracer.probes",
    "tflint_grad.tracer.harness",  # the child's own entry module (re-imported under its name)
    "tflint_grad.tracer.confine",
    "tflint_grad.scripttext",  # how parent and child quote the script's words (standard library only)
}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names if node.module == "tflint_grad.tracer"}
    return {m for m in out if m.startswith("tflint_grad")}


def test_the_child_imports_no_parent_side_module():
    for name in CHILD:
        bad = {
            m for m in _imports(TRACER / name) if m not in ALLOWED and not m.startswith("tflint_grad.tracer.probes.")
        }
        assert not bad, f"{name} imports parent-side modules: {sorted(bad)}"


def test_probes_are_a_package_of_small_modules():
    files = sorted((TRACER / "probes").glob("*.py"))
    assert len(files) >= 6
    for f in files:
        assert len(f.read_text().splitlines()) < 800, f"{f.name} is a god module again"
