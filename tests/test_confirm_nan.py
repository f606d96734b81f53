"""``--confirm`` on the NaN/Inf and optimizer examples (``examples/nan``), end to end with real TensorFlow.

ONE run of the real console script traces everything (each TensorFlow child costs 5-10 s)::

    tflint-grad check --confirm --no-cache --isolated --format json -j 2 examples/nan/

It lints the five scripts and their fixed twins (``fixed/``); the runner traces the files with
findings (the five scripts: the twins have none, so there is nothing to trace) in one
``confirm()`` call, two children at a time, with the default 5 traced steps. The JSON report
gives every finding's verdict and evidence; the static findings (``engine.lint_bytes``) are
checked against it. The issue's acceptance case: TFG401 on the classic TF1 MNIST loss
``-tf.reduce_sum(y_ * tf.log(y_conv))`` is ``confirmed`` with the op chain (Log ← Softmax and
its line) as evidence, and the clipped version is clean.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import EXAMPLES, ROOT, requires_tf

from tflint_grad.engine import lint_bytes

pytestmark = [pytest.mark.tf, requires_tf]

NAN = EXAMPLES / "nan"
SCRIPTS = {
    "tfg401_mnist_log_softmax.py": {("TFG401", 35)},
    "tfg402_softmax_as_logits.py": {("TFG402", 35)},
    "tfg403_triplet_sqrt.py": {("TFG403", 42), ("TFG403", 43)},
    "tfg502_optimizer_in_loop.py": {("TFG502", 24)},
    "tfg503_relu_logits.py": {("TFG503", 28)},
}


def _command() -> list[str]:
    exe = shutil.which("tflint-grad")
    return [exe] if exe else [sys.executable, "-m", "tflint_grad"]


def _run_cli(tmp: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["TFLINT_GRAD_CACHE_DIR"] = str(tmp / "cache")  # --no-cache: nothing should land there
    cmd = [
        *_command(),
        "check",
        "--confirm",
        "--no-cache",
        "--isolated",
        "--format",
        "json",
        "-j",
        "2",
        "examples/nan/",
    ]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    return {
        "returncode": proc.returncode,
        "stdout": proc.stdout,
        "stderr": proc.stderr,
        "duration": round(time.monotonic() - start, 1),
    }


@pytest.fixture(scope="session")
def cli_run(tmp_path_factory) -> dict:
    """Run once per test session, also under pytest-xdist (-n 2): the first worker runs the CLI,
    the others wait on a file lock and read its result (the pattern of test_confirm_seeds.py)."""
    from filelock import FileLock

    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = tmp_path_factory.getbasetemp().parent  # the same for every worker of this run
    else:
        shared = tmp_path_factory.mktemp("confirm-nan-shared")
    data_file = shared / "confirm_nan.json"
    with FileLock(str(shared / "confirm_nan.lock")):
        if data_file.exists():
            data = json.loads(data_file.read_text())
        else:
            data = _run_cli(tmp_path_factory.mktemp("confirm-nan"))
            data_file.write_text(json.dumps(data))
    assert data["returncode"] == 1, (data["returncode"], data["stderr"][-3000:])  # findings, no error (2)
    data["report"] = json.loads(data["stdout"])
    return data


def _findings(cli_run: dict, name: str, folder: Path = NAN) -> list[dict]:
    rel = (folder / name).relative_to(ROOT).as_posix()
    return [f for f in cli_run["report"]["findings"] if f["path"] == rel]


def _one(cli_run: dict, name: str, code: str, line: int) -> dict:
    hits = [f for f in _findings(cli_run, name) if f["code"] == code and f["line"] == line]
    assert len(hits) == 1, [(f["code"], f["line"], f["verdict"], f["evidence"]) for f in _findings(cli_run, name)]
    f = hits[0]
    assert f["verdict"] == "confirmed", (code, line, f["verdict"], f["evidence"])
    return f


def _static(path: Path) -> set[tuple[str, int]]:
    result = lint_bytes(path.read_bytes(), str(path))
    assert not result.errors, result.errors
    return {(f.code, f.line) for f in result.findings}


def test_one_run_over_scripts_and_fixed_twins(cli_run):
    report = cli_run["report"]
    assert report["files_checked"] == 2 * len(SCRIPTS)
    assert sorted(p.name for p in NAN.glob("*.py")) == sorted(SCRIPTS)
    # the traced findings are exactly the static ones (the trace adds none and drops none)
    for name, expected in SCRIPTS.items():
        static = _static(NAN / name)
        assert static == expected, (name, static)
        assert {(f["code"], f["line"]) for f in _findings(cli_run, name)} == static
    assert "6 confirmed" in cli_run["stderr"], cli_run["stderr"][-2000:]


def test_fixed_twins_are_clean(cli_run):
    for name in SCRIPTS:
        assert _static(NAN / "fixed" / name) == set(), name
        found = _findings(cli_run, name, NAN / "fixed")
        assert not found, [(f["code"], f["line"], f["verdict"]) for f in found]
    assert not [f for f in cli_run["report"]["findings"] if "/fixed/" in f["path"] and f["verdict"] == "confirmed"]


def test_tfg401_mnist_log_of_softmax_confirmed_with_the_op_chain(cli_run):
    f = _one(cli_run, "tfg401_mnist_log_softmax.py", "TFG401", 35)
    # the traced graph: the Log created at line 35 is fed by the Softmax of line 33, unclipped
    assert f["evidence"].startswith("Log ← Softmax (line 33), no clipping"), f["evidence"]
    # raw pixel values: the loss goes NaN at the second step, within the 5 traced steps,
    # reported at the loss op's own line (not the sess.run line)
    m = re.search(r"loss became NaN at step (\d+) \(\w+, line 35\)", f["evidence"])
    assert m and int(m.group(1)) < 5, f["evidence"]


def test_tfg402_softmax_output_used_as_logits(cli_run):
    f = _one(cli_run, "tfg402_softmax_as_logits.py", "TFG402", 35)
    assert "logits input of the loss at line 35 comes from Softmax (line 27)" in f["evidence"], f["evidence"]


def test_tfg403_sqrt_of_a_zero_distance(cli_run):
    pos = _one(cli_run, "tfg403_triplet_sqrt.py", "TFG403", 42)
    neg = _one(cli_run, "tfg403_triplet_sqrt.py", "TFG403", 43)
    # structural evidence from the ops the tape recorded (sqrt_input), for both distances
    assert pos["evidence"].startswith("Sqrt ← Sum ← Square ← Sub at line 42, no epsilon"), pos["evidence"]
    assert neg["evidence"].startswith("Sqrt ← Sum ← Square ← Sub at line 43, no epsilon"), neg["evidence"]
    # the positive distance: half of the batch has positive == anchor, exactly 0, and NaN gradients
    assert "exactly 0 for 16 of 32 values at step 0" in pos["evidence"], pos["evidence"]
    assert "gradient became NaN at step 0" in pos["evidence"], pos["evidence"]
    # the negative distance never hits 0: its evidence does not borrow line 42's NaN
    assert "line 42" not in neg["evidence"] and "NaN" not in neg["evidence"], neg["evidence"]
    assert "no exact 0 among the 32 values traced at step 0" in neg["evidence"], neg["evidence"]


def test_tfg502_one_optimizer_per_step(cli_run):
    f = _one(cli_run, "tfg502_optimizer_in_loop.py", "TFG502", 24)
    m = re.search(r"(\d+) Adam instances created in (\d+) steps", f["evidence"])
    assert m and int(m.group(1)) > 1 and int(m.group(2)) == 5, f["evidence"]


def test_tfg503_relu_output_used_as_logits(cli_run):
    f = _one(cli_run, "tfg503_relu_logits.py", "TFG503", 28)
    # the compiled loss is built by model.fit (line 31); the ReLU is the last layer's (line 24)
    assert "logits input of the loss at line 31 comes from Relu (line 24)" in f["evidence"], f["evidence"]
