"""Static checks of the NaN/Inf and optimizer rules (TFG401-403, TFG502-503) on examples/nan.

Each script in ``examples/nan/`` is flagged with its rule at the intended lines and nothing
else of these rules; its twin in ``examples/nan/fixed/`` is clean of them. The scripts run
under TensorFlow (see their docstrings); their ``--confirm`` tests belong with the tracer.
"""

from __future__ import annotations

import pytest
from conftest import EXAMPLES

from tflint_grad.engine import lint_source
from tflint_grad.fixes import fix_text, parses
from tflint_grad.settings import Settings

NAN = EXAMPLES / "nan"
CODES = frozenset({"TFG401", "TFG402", "TFG403", "TFG502", "TFG503"})

# script -> {code: [lines]}
EXPECTED = {
    "tfg401_mnist_log_softmax.py": {"TFG401": [35]},  # cross_entropy = -tf.reduce_sum(y_ * tf.log(y_conv))
    "tfg402_softmax_as_logits.py": {"TFG402": [35]},  # sparse_softmax_cross_entropy_with_logits(logits=model(x))
    "tfg403_triplet_sqrt.py": {"TFG403": [42, 43]},  # pos_dist / neg_dist = tf.sqrt(reduce_sum(square(a - b)))
    "tfg502_optimizer_in_loop.py": {"TFG502": [24]},  # optimizer = tf.keras.optimizers.Adam(...) in the loop
    "tfg503_relu_logits.py": {"TFG503": [28]},  # loss=SparseCategoricalCrossentropy(from_logits=True)
}
LINE_TEXT = {
    "tfg401_mnist_log_softmax.py": "tf.log(y_conv)",
    "tfg402_softmax_as_logits.py": "sparse_softmax_cross_entropy_with_logits",
    "tfg403_triplet_sqrt.py": "tf.sqrt(",
    "tfg502_optimizer_in_loop.py": "tf.keras.optimizers.Adam(",
    "tfg503_relu_logits.py": "from_logits=True",
}


def _findings(path, codes=CODES):
    return [f for f in lint_source(path.read_text(), str(path), Settings(frozenset(codes))) if f.code in codes]


def test_every_script_has_a_fixed_twin():
    scripts = sorted(p.name for p in NAN.glob("*.py"))
    assert scripts == sorted(EXPECTED)
    assert sorted(p.name for p in (NAN / "fixed").glob("*.py")) == scripts


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_script_is_flagged_at_the_intended_lines(name):
    path = NAN / name
    found: dict[str, list[int]] = {}
    for f in _findings(path):
        found.setdefault(f.code, []).append(f.line)
    assert found == EXPECTED[name], [(f.code, f.line, f.message) for f in _findings(path)]
    lines = path.read_text().splitlines()
    for nums in EXPECTED[name].values():
        for n in nums:
            assert LINE_TEXT[name] in lines[n - 1], (n, lines[n - 1])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixed_twin_is_clean(name):
    found = _findings(NAN / "fixed" / name)
    assert found == [], [(f.code, f.line, f.message) for f in found]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_findings_carry_oracle_data(name):
    for f in _findings(NAN / name):
        assert f.message and f.end_line >= f.line
        if f.code == "TFG401":
            assert f.data["producer"] == "Softmax" and f.data["producer_line"] == 33
        if f.code in ("TFG402", "TFG503"):
            assert f.line in f.data["event_lines"]
        if f.code == "TFG503":
            assert 31 in f.data["event_lines"]  # model.fit builds the compiled loss
        if f.code == "TFG502":
            assert f.data["class"] == "Adam" and f.data["stmt_line"] == f.line


def test_tfg401_fix_uses_the_fused_loss():
    path = NAN / "tfg401_mnist_log_softmax.py"
    result = fix_text(path.read_text(), str(path), Settings(CODES), unsafe=True, codes={"TFG401"})
    assert parses(result.text)
    assert (
        "cross_entropy = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels=y_, logits=tf.matmul(h_fc1, W_fc2) + b_fc2))"
        in result.text
    )
    assert not [f for f in result.remaining if f.code in CODES]


def test_tfg403_fix_gives_the_fixed_twin():
    path = NAN / "tfg403_triplet_sqrt.py"
    result = fix_text(path.read_text(), str(path), Settings(CODES), unsafe=True, codes={"TFG403"})
    assert result.text == (NAN / "fixed" / path.name).read_text()


def test_tfg503_fix_removes_the_activation():
    path = NAN / "tfg503_relu_logits.py"
    result = fix_text(path.read_text(), str(path), Settings(CODES), unsafe=True, codes={"TFG503"})
    assert "tf.keras.layers.Dense(N_CLASSES, activation=None)," in result.text
    assert not [f for f in result.remaining if f.code in CODES]


def test_fixes_are_unsafe_only():
    for name in EXPECTED:
        for f in _findings(NAN / name):
            assert f.fix is None or f.fix.applicability == "unsafe", (f.code, f.fix)
