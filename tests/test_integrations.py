"""Integration behaviours of issue 12: per-file configuration, consistent fixes and counts,
noqa in real comments only, the small CLI defects and the ruff-like comforts.

The console script runs in a subprocess where the behaviour depends on it (terminal
detection, environment variables); everything else runs ``tflint_grad.cli.main`` in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tflint_grad import cli

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "examples" / "seeds"

BAD = textwrap.dedent("""\
    import tensorflow as tf
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model(x, training=True))
    grads = tape.gradient(loss, model.variables)
""")


class Ran:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.returncode, self.stdout, self.stderr = code, out, err

    def codes(self) -> list[tuple[str, str]]:
        """(path, code) of each text-format finding line."""
        out = []
        for line in self.stdout.splitlines():
            parts = line.split(": ", 1)
            if len(parts) == 2 and parts[1][:3] == "TFG":
                out.append((parts[0].split(":")[0], parts[1].split()[0]))
        return out


@pytest.fixture
def tfg(tmp_path, monkeypatch, capsys):
    """In-process ``tflint-grad`` in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)

    def call(*args: str) -> Ran:
        code = cli.main(list(args))
        cap = capsys.readouterr()
        return Ran(code, cap.out, cap.err)

    return call


def run(*args: str, cwd: Path, env: dict[str, str] | None = None, input: bytes | None = None):
    exe = shutil.which("tflint-grad")
    command = [exe] if exe else [sys.executable, "-m", "tflint_grad"]
    return subprocess.run(
        [*command, *args], cwd=cwd, env={**os.environ, **(env or {})}, input=input, capture_output=True, timeout=120
    )


def write(base: Path, name: str, text: str) -> Path:
    p = base / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


# -- 1. the closest configuration of each file ----------------------------------------------
def _monorepo(tmp_path: Path) -> None:
    write(tmp_path, "A/pyproject.toml", '[tool.tflint-grad]\nignore = ["TFG301"]\n')
    write(tmp_path, "B/pyproject.toml", '[tool.tflint-grad]\nignore = ["TFG101"]\n')
    for folder in ("A", "B"):
        shutil.copy(SEEDS / "001_tiny_init_relu.py", tmp_path / folder / "init.py")
        shutil.copy(SEEDS / "004_bn_gradient_tape.py", tmp_path / folder / "bn.py")


MONOREPO_EXPECTED = [
    ("A/bn.py", "TFG201"),
    ("A/bn.py", "TFG101"),  # A ignores only TFG301
    ("B/bn.py", "TFG201"),  # B ignores TFG101
    ("B/init.py", "TFG301"),
]


@pytest.mark.parametrize(
    "args",
    [
        ["A/init.py", "B/bn.py", "A/bn.py", "B/init.py"],
        ["B/init.py", "A/bn.py", "B/bn.py", "A/init.py"],
        ["."],
        ["B", "A"],
    ],
)
def test_each_file_uses_its_closest_configuration_whatever_the_order(tfg, tmp_path, args):
    _monorepo(tmp_path)
    for _ in range(2):  # the second run is answered by the caches (one per configuration)
        r = tfg("check", *args)
        assert r.returncode == 1
        assert r.codes() == MONOREPO_EXPECTED
    assert (tmp_path / "A" / ".tflint-grad-cache").is_dir() and (tmp_path / "B" / ".tflint-grad-cache").is_dir()


def test_config_flag_overrides_the_nested_configurations(tfg, tmp_path):
    _monorepo(tmp_path)
    write(tmp_path, "only301.toml", 'select = ["TFG301"]\n')
    r = tfg("check", "--config", "only301.toml", "A", "B")
    assert r.codes() == [("A/init.py", "TFG301"), ("B/init.py", "TFG301")]


def test_monorepo_in_a_process_pool_matches_one_process(tfg, tmp_path):
    _monorepo(tmp_path)
    for folder in ("A", "B"):
        for i in range(3):
            shutil.copy(SEEDS / "004_bn_gradient_tape.py", tmp_path / folder / f"bn{i}.py")
    files = [str(p.relative_to(tmp_path)) for p in sorted(tmp_path.rglob("*.py"), reverse=True)]
    assert len(files) >= cli.POOL_MIN_FILES
    one = tfg("check", "--no-cache", "-j", "1", *files)
    pooled = tfg("check", "--no-cache", "-j", "2", *files)
    assert one.codes() == pooled.codes()
    assert ("A/bn2.py", "TFG101") in one.codes() and ("B/bn2.py", "TFG101") not in one.codes()


# -- 3. a fix carries every edit that keeps the code consistent ----------------------------
def test_tfg101_fix_applied_alone_leaves_no_new_finding(tfg, tmp_path):
    from tflint_grad.engine import lint_source
    from tflint_grad.fixes import apply_edits

    text = (SEEDS / "004_bn_gradient_tape.py").read_text()
    (finding,) = [f for f in lint_source(text, "s.py") if f.code == "TFG101"]
    assert finding.fix is not None and len(finding.fix.edits) == 2  # gradient(...) and apply_gradients(zip(...))
    fixed = apply_edits(text, list(finding.fix.edits))  # what an editor's quick fix does
    assert "tape.gradient(loss, model.trainable_variables)" in fixed
    assert "apply_gradients(zip(grads, model.trainable_variables))" in fixed
    assert [f.code for f in lint_source(fixed, "s.py")] == ["TFG201"]


def test_fix_counts_agree(tfg, tmp_path):
    for name in ("004_bn_gradient_tape.py", "000_bn_global_variables.py", "001_tiny_init_relu.py"):
        if (SEEDS / name).exists():
            shutil.copy(SEEDS / name, tmp_path / name)
    check = tfg("check", "--no-cache")
    fixable = int(check.stderr.split(" fixable with --fix")[0].rsplit("(", 1)[1])
    assert fixable >= 1
    assert f"Would fix {fixable} issue" in tfg("check", "--diff").stderr
    assert f"Fixed {fixable} issue" in tfg("check", "--fix").stderr
