"""``--confirm`` on known-bug scripts written for issue 10, end to end with real TensorFlow.

Each script holds a real bug that an earlier tracer refuted or mis-judged: TFG201 inside a
``tf.function``, in a subclassed model, in a nested model (the layers run where a call-site-only
probe saw nothing); TFG401 with ``log(h)`` and ``log(1 - h)`` on one line; and a cost that is
only printed, never differentiated (the shape of TFG401 without its consequence). None may be
refuted, and the printed cost may not be confirmed. One ``verdicts.confirm()`` call, two at a time.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import requires_tf

from tflint_grad.engine import lint_bytes

pytestmark = [pytest.mark.tf, requires_tf]

BUGS = Path(__file__).resolve().parent / "fixtures" / "known_bugs"


@pytest.fixture(scope="module")
def judged():
    from tflint_grad.settings import TraceSettings
    from tflint_grad.verdicts import confirm

    results = {p.name: lint_bytes(p.read_bytes(), str(p)) for p in sorted(BUGS.glob("*.py"))}
    traces: dict = {}
    confirm(list(results.values()), TraceSettings(steps=5, jobs=2, cache=False, timeout=300), traces=traces)
    return {
        name: [(f.code, f.line, f.verdict, f.evidence) for f in [*r.findings, *r.candidates]]
        for name, r in results.items()
    }


@pytest.mark.parametrize("name", ["bn_tf_function.py", "bn_subclassed.py", "bn_nested.py"])
def test_tfg201_wherever_the_layers_run(judged, name):
    (finding,) = judged[name]
    code, _, verdict, evidence = finding
    assert code == "TFG201" and verdict == "confirmed", finding
    assert "BatchNormalization" in evidence and "(unchanged)" in evidence


def test_two_logs_on_one_line_are_each_confirmed(judged):
    findings = judged["two_logs.py"]
    assert [f[0] for f in findings] == ["TFG401", "TFG401"]
    assert all(f[2] == "confirmed" for f in findings), findings
    assert "Log ← Sigmoid" in findings[0][3] and "Log ← 1 - Sigmoid" in findings[1][3]


def test_a_printed_cost_is_not_confirmed(judged):
    # reported, or kept aside as a low-confidence candidate (no gradient target visibly uses it),
    # it is traced either way, and the trace must not confirm it: the Log is on no differentiated path
    ((code, _, verdict, evidence),) = judged["printed_cost.py"]
    assert code == "TFG401" and verdict == "inconclusive", (verdict, evidence)
    assert "not on the path of any gradient" in evidence


# -- real scripts that need stand-ins to run ----------------------------------------------------------

REAL = Path(__file__).resolve().parent / "fixtures" / "real_scripts"


@pytest.fixture(scope="module")
def real():
    from tflint_grad.settings import TraceSettings
    from tflint_grad.verdicts import confirm

    paths = [REAL / "proj" / "scripts" / "train.py", REAL / "tfds_script.py", REAL / "folder_script.py"]
    results = {p.name: lint_bytes(p.read_bytes(), str(p)) for p in paths}
    traces: dict = {}
    confirm(list(results.values()), TraceSettings(steps=3, jobs=2, cache=False, timeout=300), traces=traces)
    return {name: [(f.code, f.verdict, f.evidence) for f in r.findings] for name, r in results.items()}


@pytest.mark.parametrize(
    "name,stand_in",
    [
        ("train.py", "synthetic MNIST (random 28x28 images) for input_data.read_data_sets"),
        ("tfds_script.py", "synthetic mnist (512 random 28x28x1 images) for tfds.load"),
        ("folder_script.py", "image_dataset_from_directory: no images found, synthetic 64x64x3 images"),
    ],
)
def test_real_scripts_run_on_stand_ins_and_say_so(real, name, stand_in):
    ((code, verdict, evidence),) = real[name]
    assert code == "TFG201" and verdict == "confirmed", real[name]
    assert stand_in in evidence
