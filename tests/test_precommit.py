"""The pre-commit hooks, run by real ``pre-commit try-repo`` in throwaway git repos.

``try-repo`` installs the hook repository into an isolated virtualenv (``pip install .``
of the repo, so libcst etc. come from the package index). It only sees committed
files plus changes to *tracked* ones, so the test snapshots this working tree into a
temporary git repo first (the shared checkout's git state is never touched).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("git") is None, reason="needs git"),
]

FLAGGED = """\
import tensorflow as tf

model = tf.keras.Sequential([tf.keras.layers.BatchNormalization()])
with tf.GradientTape() as tape:
    loss = tf.reduce_mean(model(x, training=True))
grads = tape.gradient(loss, model.variables)
"""
CLEAN = FLAGGED.replace("model.variables", "model.trainable_variables")

_GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}
# What `pip install .` of the hook repo needs.
_PROJECT = ("pyproject.toml", "README.md", "LICENSE", ".pre-commit-hooks.yaml", "tflint_grad", "rules")


def _git(cwd: Path, *args: str) -> None:
    env = dict(os.environ, **_GIT_ENV, HOME=str(cwd))
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, timeout=60)


def _init_repo(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    _git(path, "init", "-q")
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "snapshot", "--allow-empty")


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory) -> Path:
    """This working tree (including uncommitted files) as a committed git repo."""
    if not (ROOT / "tflint_grad" / "cli.py").exists():
        pytest.skip("tflint_grad/cli.py (the `check` command) is not there yet")
    repo = tmp_path_factory.mktemp("hook-repo")
    for name in _PROJECT:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.is_file():
            shutil.copy2(src, repo / name)
    if not (repo / "README.md").exists():  # pyproject's `readme` must exist for the build
        (repo / "README.md").write_text("tflint-grad\n")
    _init_repo(repo)
    return repo


@pytest.fixture(scope="module")
def pre_commit_home(tmp_path_factory) -> Path:
    # keeps pre-commit away from the user's cache (try-repo installs into a fresh
    # temporary store on every run anyway: about 15 s each on an idle machine)
    return tmp_path_factory.mktemp("pre-commit-home")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "flagged.py").write_text(FLAGGED)
    (proj / "clean.py").write_text(CLEAN)
    _init_repo(proj)
    return proj


def try_repo(hook_repo: Path, home: Path, project: Path, hook: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, **_GIT_ENV, PRE_COMMIT_HOME=str(home), PRE_COMMIT_COLOR="never")
    env.pop("PYTHONPATH", None)  # the hook must run the copy installed in its own virtualenv
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(hook_repo), hook, "--verbose", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _notebook(code: str) -> str:
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": ["# training\n"]},
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": code.splitlines(True)},
    ]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def test_hook_fails_on_flagged_file_and_passes_on_clean_one(hook_repo, pre_commit_home, project):
    (project / "flagged.ipynb").write_text(_notebook(FLAGGED))  # types_or: [python, jupyter]
    _git(project, "add", "flagged.ipynb")
    proc = try_repo(hook_repo, pre_commit_home, project, "tflint-grad", "--all-files")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "TFG101" in out
    assert "flagged.py:6:" in out
    assert "flagged.ipynb:cell 2:6:" in out
    assert "clean.py:" not in out
    assert (project / "flagged.py").read_text() == FLAGGED  # the check hook never writes

    proc = try_repo(hook_repo, pre_commit_home, project, "tflint-grad", "--files", "clean.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Passed" in proc.stdout


def test_fix_hook_modifies_the_file(hook_repo, pre_commit_home, project):
    proc = try_repo(hook_repo, pre_commit_home, project, "tflint-grad-fix", "--all-files")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out  # pre-commit fails a hook that modified files
    assert "files were modified by this hook" in out
    assert (project / "flagged.py").read_text() == CLEAN
    assert (project / "clean.py").read_text() == CLEAN

    proc = try_repo(hook_repo, pre_commit_home, project, "tflint-grad", "--all-files")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hook_uses_each_files_closest_configuration(hook_repo, pre_commit_home, tmp_path):
    """A monorepo: A/ and B/ with their own pyproject.toml; pre-commit passes the files in
    git's order, the result must not depend on it."""
    proj = tmp_path / "mono"
    for folder, ignored in (("A", "TFG201"), ("B", "TFG101")):
        (proj / folder).mkdir(parents=True)
        (proj / folder / "pyproject.toml").write_text(f'[tool.tflint-grad]\nignore = ["{ignored}"]\n')
        (proj / folder / "train.py").write_text(FLAGGED.replace("model(x, training=True)", "model(x)"))
    _init_repo(proj)
    proc = try_repo(hook_repo, pre_commit_home, proj, "tflint-grad", "--all-files")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "A/train.py:6:" in out and "A/train.py:5:" not in out  # A ignores TFG201 (line 5)
    assert "B/train.py:5:" in out and "B/train.py:6:" not in out  # B ignores TFG101 (line 6)
