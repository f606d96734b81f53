"""The five seed questions are flagged at the right lines; their fixed versions are clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from tflint_grad.engine import lint_bytes

SEEDS = Path(__file__).resolve().parent.parent / "examples" / "seeds"

# file -> sorted [(code, line)] the static pass must report
EXPECTED = {
    "000_bn_global_variables.py": [("TFG101", 32)],
    "001_tiny_init_relu.py": [("TFG301", 8)],
    "002_rnn_state_grads.py": [],  # its None gradients are expected (no path): TFG105, found by --confirm-all
    "003_unrun_assign_bn.py": [("TFG203", 19), ("TFG203", 20)],
    "004_bn_gradient_tape.py": [("TFG201", 17), ("TFG101", 19)],
}


def _lint(path: Path):
    result = lint_bytes(path.read_bytes(), str(path))
    assert not result.errors, result.errors
    return result.findings


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_seed_is_flagged_at_the_expected_lines(name):
    findings = _lint(SEEDS / name)
    got = sorted((f.line, f.code) for f in findings)
    # The messages themselves are pinned by tests/snapshots/seeds.txt (tests/test_messages.py).
    assert got == sorted((line, code) for code, line in EXPECTED[name]), [(f.line, f.code, f.message) for f in findings]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixed_seed_is_clean(name):
    findings = _lint(SEEDS / "fixed" / name)
    assert findings == [], [(f.line, f.code, f.message) for f in findings]
