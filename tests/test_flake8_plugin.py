"""The flake8 plugin, run by real flake8 in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tflint_grad import __version__
from tflint_grad.engine import lint_source

pytest.importorskip("flake8")

ROOT = Path(__file__).resolve().parent.parent

SRC = """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.BatchNormalization()])
with tf.GradientTape() as tape:
    loss = tf.reduce_mean(model(x, training=True))
grads = tape.gradient(loss, model.variables)
"""
FLAGGED = (6, len("grads = tape.gradient(loss, ") + 1)  # 1-based line, column

_OUT = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): (?P<code>[A-Z]+\d+) (?P<message>.*)$")


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    """A dist-info that registers the checkout's plugin under the distribution name
    ``tflint-grad``: flake8 keeps the first distribution of a name on ``sys.path``,
    so an installed copy (or a stale ``*.egg-info``) cannot add a second TFG plugin."""
    shim = tmp_path_factory.mktemp("flake8-shim")
    info = shim / f"tflint_grad-{__version__}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: tflint-grad\nVersion: {__version__}\n")
    (info / "entry_points.txt").write_text("[flake8.extension]\nTFG = tflint_grad.flake8_plugin:Checker\n")
    return shim


def flake8(plugin_path: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_path), str(ROOT)])
    return subprocess.run(
        [sys.executable, "-m", "flake8", "--isolated", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def parse(stdout: str) -> list[dict[str, str]]:
    return [m.groupdict() for line in stdout.splitlines() if (m := _OUT.match(line))]


def test_plugin_is_registered(plugin_path: Path, tmp_path: Path):
    proc = flake8(plugin_path, tmp_path, "--version")
    assert proc.returncode == 0, proc.stderr
    assert f"tflint-grad: {__version__}" in " ".join(proc.stdout.split())


def test_reports_tfg101_with_flake8_columns(plugin_path: Path, tmp_path: Path):
    (tmp_path / "train.py").write_text(SRC)
    proc = flake8(plugin_path, tmp_path, "--select", "TFG", "train.py")
    assert proc.returncode == 1, proc.stderr
    results = parse(proc.stdout)
    assert [(r["code"], int(r["line"]), int(r["col"])) for r in results] == [("TFG101", *FLAGGED)]
    assert "model.variables" in results[0]["message"]
    # the same 1-based column as the core (and so as `tflint-grad check`'s text output)
    (finding,) = lint_source(SRC, "train.py")
    assert (finding.line, finding.column) == FLAGGED


def test_column_matches_cli_text_output(plugin_path: Path, tmp_path: Path):
    if not (ROOT / "tflint_grad" / "cli.py").exists():
        pytest.skip("tflint_grad/cli.py is not there yet")
    (tmp_path / "train.py").write_text(SRC)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run_cli = "import sys; from tflint_grad.cli import main; sys.exit(main())"
    cli = subprocess.run(
        [sys.executable, "-c", run_cli, "check", "--isolated", "--no-cache", "train.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 1, cli.stdout + cli.stderr
    cli_hits = [(r["code"], r["line"], r["col"]) for r in parse(cli.stdout)]
    f8 = flake8(plugin_path, tmp_path, "--select", "TFG", "train.py")
    f8_hits = [(r["code"], r["line"], r["col"]) for r in parse(f8.stdout)]
    assert cli_hits == f8_hits == [("TFG101", str(FLAGGED[0]), str(FLAGGED[1]))]


def test_respects_flake8_noqa_and_selection(plugin_path: Path, tmp_path: Path):
    # flake8's own noqa syntax (space-separated codes) is something the core does not parse
    noqa = SRC.replace("model.variables)\n", "model.variables)  # noqa: E501 TFG101\n")
    (tmp_path / "noqa.py").write_text(noqa)
    (tmp_path / "train.py").write_text(SRC)
    proc = flake8(plugin_path, tmp_path, "--select", "TFG", "noqa.py")
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr

    proc = flake8(plugin_path, tmp_path, "--select", "TFG", "--disable-noqa", "noqa.py")
    assert [r["code"] for r in parse(proc.stdout)] == ["TFG101"]

    proc = flake8(plugin_path, tmp_path, "--select", "TFG", "--extend-ignore", "TFG101", "train.py")
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr

    proc = flake8(plugin_path, tmp_path, "--select", "TFG", "--per-file-ignores", "train.py:TFG1", "train.py")
    assert (proc.returncode, proc.stdout) == (0, ""), proc.stderr

    proc = flake8(plugin_path, tmp_path, "--select", "F", "train.py")  # TFG not selected: pyflakes only
    assert {r["code"] for r in parse(proc.stdout)} == {"F821"}


def test_never_imports_tensorflow_and_skips_non_tf_files(plugin_path: Path, tmp_path: Path):
    (tmp_path / "train.py").write_text(SRC)
    (tmp_path / "plain.py").write_text("def gradient(x, variables):\n    return x.variables\n")
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['flake8', '--isolated', '--select', 'TFG', 'train.py', 'plain.py']\n"
        "try:\n"
        "    runpy.run_module('flake8', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('TF-IMPORTED' if 'tensorflow' in sys.modules else 'TF-NOT-IMPORTED')\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(plugin_path), str(ROOT)]))
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert "TF-NOT-IMPORTED" in proc.stdout, proc.stdout + proc.stderr
    assert [r["path"] for r in parse(proc.stdout)] == ["train.py"]


def test_only_real_comments_silence(plugin_path: Path, tmp_path: Path):
    """A docstring documenting the file-level directive silences nothing (one rule for the
    CLI, the editor and flake8: tflint_grad.suppressions)."""
    (tmp_path / "doc.py").write_text('"""Silence a file with # tflint-grad: noqa."""\n' + SRC)
    proc = flake8(plugin_path, tmp_path, "--select", "TFG", "doc.py")
    assert [(f["line"], f["code"]) for f in parse(proc.stdout)] == [(str(FLAGGED[0] + 1), "TFG101")], proc.stderr
    (tmp_path / "real.py").write_text("# tflint-grad: noqa\n" + SRC)
    assert parse(flake8(plugin_path, tmp_path, "--select", "TFG", "real.py").stdout) == []
