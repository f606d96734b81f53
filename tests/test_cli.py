"""The ``tflint-grad`` command: the real console script in a subprocess, plus in-process runs
of ``tflint_grad.cli.main`` for the many small cases (same code, no interpreter start-up).

Only TFG000 and TFG101 are relied on; rules with unsafe / broken / crashing fixes are
test-local rules patched into the registry (in-process runs only).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import libcst as cst
import pytest

from tflint_grad import __version__, cli
from tflint_grad.rule import Rule

ROOT = Path(__file__).resolve().parent.parent

# the model is on line 1 so that the flagged `model.variables` stays at 4:29 in every test below
BAD = textwrap.dedent("""\
    import tensorflow as tf; model = tf.keras.Sequential([tf.keras.layers.BatchNormalization()])
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(model(x, training=True))
    grads = tape.gradient(loss, model.variables)
""")
BAD_FIXED = BAD.replace("model.variables", "model.trainable_variables")
CLEAN = BAD_FIXED
PY2 = "import tensorflow as tf\nprint tf.__version__\n"
NOT_TF = "print('hello')\n"


# -- helpers ---------------------------------------------------------------------------
def _command() -> list[str]:
    exe = shutil.which("tflint-grad")
    return [exe] if exe else [sys.executable, "-m", "tflint_grad"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run(
    *args: str, cwd: Path, input: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The real console script (the checkout's code first on sys.path); ``env`` is added to its environment."""
    return subprocess.run(
        [*_command(), *args], cwd=cwd, env={**_env(), **(env or {})}, input=input, capture_output=True, timeout=120
    )


class Ran:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.returncode, self.stdout, self.stderr = code, out, err


@pytest.fixture
def tfg(tmp_path, monkeypatch, capsys):
    """In-process ``tflint-grad`` in ``tmp_path``."""
    monkeypatch.chdir(tmp_path)

    def call(*args: str) -> Ran:
        code = cli.main(list(args))
        cap = capsys.readouterr()
        return Ran(code, cap.out, cap.err)

    return call


def write(base: Path, name: str, text: str) -> Path:
    p = base / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def notebook(*cells: tuple[str, str]) -> str:
    return json.dumps(
        {
            "cells": [
                {
                    "cell_type": kind,
                    "metadata": {},
                    "source": src.splitlines(keepends=True),
                    **({"outputs": [], "execution_count": None} if kind == "code" else {}),
                }
                for kind, src in cells
            ],
            "metadata": {},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


def patch_rules(monkeypatch, *extra):
    """Add test-local rules to the registry (in-process only)."""
    from tflint_grad import engine, registry, settings

    rules = tuple(sorted((*registry.all_rules(), *extra), key=lambda r: r.code))
    fake = lambda: rules  # noqa: E731
    for mod in (registry, engine, settings):
        monkeypatch.setattr(mod, "all_rules", fake)


class RiskyCall(Rule):
    """Test rule: `risky()` calls, with an unsafe fix.

    ## What it does
    ## Why is this bad?
    ## Example
    Use instead:
    """

    code = "TFG991"
    name = "risky-call"
    requires = ("risky",)

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Name) and node.func.value == "risky":
            self.report(node.func, "risky call", fix=self.replace(node.func, "careful", "Use careful()", "unsafe"))


class BreaksCode(Rule):
    """Test rule: its safe fix produces code that does not parse."""

    code = "TFG992"
    name = "breaks-code"
    requires = ("breakme",)

    def visit_Name(self, node: cst.Name) -> None:
        if node.value == "breakme":
            self.report(node, "breakme", fix=self.replace(node, "breakme(", "Break it", "safe"))


class Crashes(Rule):
    """Test rule: raises on every file that mentions `crashme`."""

    code = "TFG993"
    name = "crashes"
    requires = ("crashme",)

    def visit_Name(self, node: cst.Name) -> None:
        if node.value == "crashme":
            raise ValueError("boom")


# -- the real console script ----------------------------------------------------------
def test_console_script_is_installed_and_runs_this_checkout(tmp_path):
    if shutil.which("tflint-grad") is None:
        pytest.skip("tflint-grad is not installed (pip install -e .)")
    proc = run("--version", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.decode().strip() == f"tflint-grad {__version__}"
    proc = run("rules", "--format", "json", cwd=tmp_path)
    codes = {r["code"] for r in json.loads(proc.stdout)}
    assert {"TFG000", "TFG101"} <= codes  # the rules/ folder maps to tflint_grad.rules


def test_exit_codes_0_1_2(tmp_path):
    write(tmp_path, "clean.py", CLEAN)
    write(tmp_path, "bad.py", BAD)
    ok = run("check", "clean.py", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == b""
    assert b"All checks passed (1 file)" in ok.stderr
    bad = run("check", cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stdout.decode() == (
        "bad.py:4:29: TFG101 [*] gradients taken w.r.t. `model.variables`, which includes the non-trainable "
        "moving_mean/moving_variance of the BatchNormalization in `model` (a `Sequential` model): their gradients "
        "are always None; use the trainable variables instead\n"
    )
    assert b"Found 1 finding in 1 file (1 fixable with --fix)" in bad.stderr
    missing = run("check", "nope.py", cwd=tmp_path)
    assert missing.returncode == 2
    assert b"no such file or folder: 'nope.py'" in missing.stderr
    assert run("check", "--exit-zero", cwd=tmp_path).returncode == 0
    assert run("check", "--exit-zero", "nope.py", cwd=tmp_path).returncode == 2


def test_default_command_is_check(tmp_path):
    write(tmp_path, "bad.py", BAD)
    proc = run("bad.py", cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout.startswith(b"bad.py:4:29: TFG101")


def test_stdin(tmp_path):
    write(tmp_path, "pyproject.toml", '[tool.tflint-grad]\nper-file-ignores = { "tests/*" = ["TFG101"] }\n')
    proc = run("check", "-", "--stdin-filename", "src/train.py", cwd=tmp_path, input=BAD.encode())
    assert proc.returncode == 1
    assert proc.stdout.startswith(b"src/train.py:4:29: TFG101")
    # per-file-ignores apply to the stdin file name
    proc = run("check", "-", "--stdin-filename", "tests/t.py", cwd=tmp_path, input=BAD.encode())
    assert proc.returncode == 0, proc.stdout
    # --fix on stdin: the fixed code on stdout, the report on stderr
    proc = run("check", "--fix", "-", "--stdin-filename", "src/train.py", cwd=tmp_path, input=BAD.encode())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode() == BAD_FIXED
    assert b"Fixed 1 issue" in proc.stderr
    # notebook from stdin
    nb = notebook(
        ("code", "import tensorflow as tf\nmodel = tf.keras.Sequential([tf.keras.layers.BatchNormalization()])\n"),
        ("code", "g = tape.gradient(loss, model.variables)\n"),
    )
    proc = run("check", "-", "--stdin-filename", "nb.ipynb", "--format", "json", cwd=tmp_path, input=nb.encode())
    data = json.loads(proc.stdout)
    assert [(f["code"], f["cell"], f["line"]) for f in data["findings"]] == [("TFG101", 1, 1)]


def test_force_exclude_on_stdin_prints_nothing(tmp_path):
    write(tmp_path, "pyproject.toml", '[tool.tflint-grad]\nextend-exclude = ["legacy/"]\n')
    proc = run("check", "--force-exclude", "-", "--stdin-filename", "legacy/x.py", cwd=tmp_path, input=BAD.encode())
    assert proc.returncode == 0 and proc.stdout == b""
    proc = run("check", "-", "--stdin-filename", "legacy/x.py", cwd=tmp_path, input=BAD.encode())
    assert proc.returncode == 1  # without --force-exclude an explicit file is linted


def test_jobs_2_equals_jobs_1(tmp_path):
    for i in range(14):
        write(tmp_path, f"pkg{i % 3}/m{i:02d}.py", [BAD, CLEAN, PY2, NOT_TF][i % 4])
    write(tmp_path, "nb.ipynb", notebook(("code", "import tensorflow as tf\ng = tape.gradient(loss, model.weights)\n")))
    one = run("check", "-j", "1", "--format", "json", "--no-cache", cwd=tmp_path)
    two = run("check", "-j", "2", "--format", "json", "--no-cache", "-v", cwd=tmp_path)
    assert one.returncode == two.returncode == 1
    assert one.stdout == two.stdout
    assert b"with 2 process(es)" in two.stderr  # the pool was really used
    data = json.loads(one.stdout)
    assert data["files_checked"] == 15
    paths = [f["path"] for f in data["findings"]]
    assert paths == sorted(paths)
    text1 = run("check", "-j", "1", "--no-cache", cwd=tmp_path)
    text2 = run("check", "-j", "2", "--no-cache", cwd=tmp_path)
    assert text1.stdout == text2.stdout and text1.stderr == text2.stderr


def test_fix_and_diff_with_the_console_script(tmp_path):
    p = write(tmp_path, "bad.py", BAD)
    p.chmod(0o754)
    diff = run("check", "--diff", cwd=tmp_path)
    assert diff.returncode == 1
    assert diff.stdout.decode().startswith("--- a/bad.py\n+++ b/bad.py\n")
    assert "+grads = tape.gradient(loss, model.trainable_variables)" in diff.stdout.decode()
    assert p.read_text() == BAD  # --diff writes nothing
    fixed = run("check", "--fix", cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert b"Fixed 1 issue" in fixed.stderr and b"All checks passed" in fixed.stderr
    assert p.read_text() == BAD_FIXED
    assert stat.S_IMODE(p.stat().st_mode) == 0o754
    assert [x.name for x in tmp_path.iterdir() if x.name.endswith(".tmp")] == []
    again = run("check", "--fix", cwd=tmp_path)
    assert again.returncode == 0 and p.read_text() == BAD_FIXED
    assert b"Fixed 0 issues" in again.stderr
    assert run("check", "--diff", cwd=tmp_path).returncode == 0


def test_python2_file_is_a_finding_not_a_traceback(tmp_path):
    write(tmp_path, "old.py", PY2 + "try:\n    pass\nexcept ValueError, e:\n    pass\n")
    proc = run("check", "old.py", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stdout.startswith(b"old.py:2:1: TFG000 cannot parse: a Python 2 `print` statement")
    assert b"Traceback" not in proc.stderr


# -- in-process: selection, config, formats --------------------------------------------
def test_selection(tfg, tmp_path):
    write(tmp_path, "bad.py", BAD)
    write(tmp_path, "old.py", PY2)
    assert {l.split()[1] for l in tfg("check").stdout.splitlines()} == {"TFG101", "TFG000"}
    assert {l.split()[1] for l in tfg("check", "--select", "TFG0").stdout.splitlines()} == {"TFG000"}
    assert {l.split()[1] for l in tfg("check", "--ignore", "TFG101").stdout.splitlines()} == {"TFG000"}
    assert {
        l.split()[1] for l in tfg("check", "--select", "TFG000", "--extend-select", "TFG101").stdout.splitlines()
    } == {"TFG000", "TFG101"}
    # a file that cannot be parsed is reported whatever the selection (ruff's syntax errors)
    assert {l.split()[1] for l in tfg("check", "--select", "ALL", "--ignore", "TFG000,TFG1").stdout.splitlines()} == {
        "TFG000"
    }
    assert {l.split()[1] for l in tfg("check", "--select", "gradient-wrt-non-trainable").stdout.splitlines()} == {
        "TFG000",
        "TFG101",
    }
    r = tfg("check", "--select", "TFG999")
    assert r.returncode == 2 and "--select: unknown rule selector 'TFG999'" in r.stderr
    r = tfg("check", "--ignore", "nonsense")
    assert r.returncode == 2 and "'nonsense'" in r.stderr


def test_config_selection_and_cli_override(tfg, tmp_path):
    write(tmp_path, "bad.py", BAD)
    write(tmp_path, "old.py", PY2)
    write(tmp_path, "pyproject.toml", '[tool.tflint-grad]\nignore = ["TFG101"]\n')
    assert {l.split()[1] for l in tfg("check").stdout.splitlines()} == {"TFG000"}
    # --select on the command line replaces the config's selection
    assert {l.split()[1] for l in tfg("check", "--select", "TFG101").stdout.splitlines()} == {"TFG000", "TFG101"}
    # --isolated ignores the config
    assert {l.split()[1] for l in tfg("check", "--isolated").stdout.splitlines()} == {"TFG000", "TFG101"}
    other = write(tmp_path, "conf/other.toml", 'select = ["TFG101"]\n')
    assert {l.split()[1] for l in tfg("check", "--config", str(other)).stdout.splitlines()} == {"TFG000", "TFG101"}
    r = tfg("check", "--config", "missing.toml")
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = tfg("check", "--config", str(other), "--isolated")
    assert r.returncode == 2


@pytest.mark.parametrize(
    "toml,message",
    [
        ('selct = ["TFG1"]', "unknown key 'tool.tflint-grad.selct' in pyproject.toml (did you mean 'select'?)"),
        ('select = "TFG101"', "'tool.tflint-grad.select' in pyproject.toml must be a list of strings"),
        ('select = ["TFG9"]', "'tool.tflint-grad.select' in pyproject.toml: unknown rule selector 'TFG9'"),
        ('respect-gitignore = "yes"', "'tool.tflint-grad.respect-gitignore' in pyproject.toml must be true or false"),
        ("[tool.tflint-grad.rules.TFG101]\nfoo = 1", "rule TFG101 (gradient-wrt-non-trainable) has no options"),
        ("[tool.tflint-grad.rules.TFG909]\nfoo = 1", "unknown rule 'tool.tflint-grad.rules.TFG909'"),
        (
            "[tool.tflint-grad.trace]\nstep = 3",
            "unknown key 'tool.tflint-grad.trace.step' in pyproject.toml (did you mean 'steps'?)",
        ),
        (
            '[tool.tflint-grad.trace]\ntimeout = "long"',
            "'tool.tflint-grad.trace.timeout' in pyproject.toml must be a positive number",
        ),
        ('output-format = "xml"', "must be one of text, json, sarif, github"),
        ("select = [", "pyproject.toml is not valid TOML"),
    ],
)
def test_config_errors_exit_2(tfg, tmp_path, toml, message):
    write(tmp_path, "bad.py", BAD)
    write(tmp_path, "pyproject.toml", "[tool.tflint-grad]\n" + toml + "\n")
    r = tfg("check")
    assert r.returncode == 2
    assert message in r.stderr, r.stderr
    assert r.stdout == ""


def test_config_found_from_a_subfolder_and_patterns_are_relative_to_it(tfg, tmp_path, monkeypatch):
    write(tmp_path, "pyproject.toml", '[tool.tflint-grad]\nper-file-ignores = { "pkg/gen_*.py" = ["TFG1"] }\n')
    write(tmp_path, "pkg/gen_a.py", BAD)
    write(tmp_path, "pkg/b.py", BAD)
    assert [l.split(":")[0] for l in tfg("check").stdout.splitlines()] == ["pkg/b.py"]
    monkeypatch.chdir(tmp_path / "pkg")
    assert [l.split(":")[0] for l in tfg("check").stdout.splitlines()] == ["b.py"]
    assert [l.split(":")[0] for l in tfg("check", "gen_a.py", "b.py").stdout.splitlines()] == ["b.py"]


def test_a_pyproject_without_the_section_is_skipped(tfg, tmp_path, monkeypatch):
    write(tmp_path, "pyproject.toml", '[tool.tflint-grad]\nignore = ["TFG101"]\n')
    write(tmp_path, "sub/pyproject.toml", '[project]\nname = "x"\n')
    write(tmp_path, "sub/bad.py", BAD)
    monkeypatch.chdir(tmp_path / "sub")
    assert tfg("check").returncode == 0


def test_noqa(tfg, tmp_path):
    write(tmp_path, "a.py", BAD.replace("model.variables)", "model.variables)  # noqa: TFG101"))
    write(tmp_path, "b.py", BAD.replace("model.variables)", "model.variables)  # noqa"))
    write(tmp_path, "c.py", BAD.replace("model.variables)", "model.variables)  # noqa: TFG000"))
    write(tmp_path, "d.py", "# tflint-grad: noqa: TFG101\n" + BAD)
    r = tfg("check")
    assert [l.split(":")[0] for l in r.stdout.splitlines()] == ["c.py"]


def test_notebooks(tfg, tmp_path):
    write(
        tmp_path,
        "nb.ipynb",
        notebook(
            ("markdown", "# Training\n"),
            (
                "code",
                "%matplotlib inline\n!pip install tensorflow\nimport tensorflow as tf\nmodel = tf.keras.Sequential([tf.keras.layers.BatchNormalization()])\n",
            ),
            (
                "code",
                "%%time\nwith tf.GradientTape() as tape:\n    loss = model(x, training=True)\ngrads = tape.gradient(loss, model.variables)\n",
            ),
        ),
    )
    write(tmp_path, "broken.ipynb", "{not json: import tensorflow")
    r = tfg("check", "--no-cache")
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines[0].startswith("broken.ipynb:1:2: TFG000 the notebook is not valid JSON")
    # text: 1-based cell number as Jupyter shows it; [*]: --fix edits the cell
    assert lines[1].startswith("nb.ipynb:cell 3:4:29: TFG101 [*] gradients taken")
    data = json.loads(tfg("check", "--format", "json").stdout)
    nb = [f for f in data["findings"] if f["path"] == "nb.ipynb"]
    assert [(f["cell"], f["line"], f["column"]) for f in nb] == [(2, 4, 29)]  # JSON: 0-based cell index
    before = (tmp_path / "nb.ipynb").read_bytes()
    r = tfg("check", "--fix")
    after = (tmp_path / "nb.ipynb").read_bytes()
    assert after == before.replace(b"model.variables)", b"model.trainable_variables)")
    assert "Fixed 1 issue" in r.stderr


def test_json_contract(tfg, tmp_path):
    write(tmp_path, "bad.py", BAD)
    write(tmp_path, "clean.py", CLEAN)
    r = tfg("check", "--format", "json")
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert set(data) == {"version", "findings", "files_checked"}
    assert data["version"] == __version__ and data["files_checked"] == 2
    (f,) = data["findings"]
    assert set(f) == {
        "code",
        "name",
        "path",
        "line",
        "column",
        "end_line",
        "end_column",
        "message",
        "severity",
        "verdict",
        "confidence",
        "evidence",
        "fix",
        "url",
    }
    assert f["confidence"] == "high"
    assert (f["code"], f["name"], f["path"], f["line"], f["column"], f["end_line"], f["end_column"]) == (
        "TFG101",
        "gradient-wrt-non-trainable",
        "bad.py",
        4,
        29,
        4,
        44,
    )
    assert f["verdict"] == "unconfirmed" and f["evidence"] is None
    assert f["fix"]["applicability"] == "safe"
    assert f["fix"]["edits"] == [
        {"line": 4, "column": 29, "end_line": 4, "end_column": 44, "content": "model.trainable_variables"}
    ]
    assert f["url"].endswith("/docs/rules/TFG101.md")
    empty = json.loads(tfg("check", "clean.py", "--format", "json").stdout)
    assert empty == {"version": __version__, "findings": [], "files_checked": 1}


def test_output_format_from_config_and_output_file(tfg, tmp_path):
    write(tmp_path, "bad.py", BAD)
    write(tmp_path, "pyproject.toml", '[tool.tflint-grad]\noutput-format = "json"\n')
    assert json.loads(tfg("check").stdout)["files_checked"] == 1
    r = tfg("check", "--format", "github", "--output", "report.txt")
    assert r.returncode == 1 and r.stdout == ""
    assert (
        (tmp_path / "report.txt")
        .read_text()
        .startswith("::warning title=tflint-grad (TFG101),file=bad.py,line=4,col=29")
    )


def test_sarif_and_github_formats(tfg, tmp_path):
    write(tmp_path, "src/bad.py", BAD)
    sarif = json.loads(tfg("check", "--format", "sarif").stdout)
    run_ = sarif["runs"][0]
    (res,) = run_["results"]
    assert res["ruleId"] == "TFG101"
    assert run_["tool"]["driver"]["rules"][res["ruleIndex"]]["id"] == "TFG101"
    loc = res["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"] == {"uri": "src/bad.py", "uriBaseId": "%SRCROOT%"}
    assert loc["region"] == {"startLine": 4, "startColumn": 29, "endLine": 4, "endColumn": 44}
    gh = tfg("check", "--format", "github").stdout
    assert gh.startswith(
        "::warning title=tflint-grad (TFG101),file=src/bad.py,line=4,col=29,endLine=4,endColumn=44::src/bad.py:4:29: TFG101 "
    )


def test_statistics(tfg, tmp_path):
    write(tmp_path, "a.py", BAD)
    write(tmp_path, "b.py", BAD)
    write(tmp_path, "c.py", PY2)
    r = tfg("check", "--statistics")
    assert r.returncode == 1
    assert r.stdout.splitlines() == ["2\tTFG101\t[*] gradient-wrt-non-trainable", "1\tTFG000\t    unanalyzable-file"]
    stats = json.loads(tfg("check", "--statistics", "--format", "json").stdout)
    assert stats[0] == {"code": "TFG101", "name": "gradient-wrt-non-trainable", "count": 2, "fixable": 2}
    assert tfg("check", "--statistics", "--format", "sarif").returncode == 2


def test_quiet_and_show_fixes(tfg, tmp_path):
    write(tmp_path, "a.py", BAD)
    r = tfg("check", "-q")
    assert r.returncode == 1 and r.stderr == "" and r.stdout.count("\n") == 1
    r = tfg("check", "--show-fixes")
    assert "    help: Use `model.trainable_variables` (safe fix)" in r.stdout


# -- files -----------------------------------------------------------------------------
def test_gitignore_and_excludes(tfg, tmp_path):
    (tmp_path / ".git").mkdir()
    write(tmp_path, ".gitignore", "generated/\n*_pb2.py\n")
    write(tmp_path, "generated/a.py", BAD)
    write(tmp_path, "x_pb2.py", BAD)
    write(tmp_path, "pkg/.gitignore", "local.py\n!keep_pb2.py\n")
    write(tmp_path, "pkg/local.py", BAD)
    write(tmp_path, "pkg/keep_pb2.py", BAD)
    write(tmp_path, "pkg/mod.py", BAD)
    write(tmp_path, "build/b.py", BAD)
    write(tmp_path, "node_modules/n.py", BAD)
    write(tmp_path, ".venv/lib/v.py", BAD)
    write(tmp_path, "env2/pyvenv.cfg", "home = /usr\n")
    write(tmp_path, "env2/lib/e.py", BAD)
    write(tmp_path, "legacy/old.py", BAD)
    write(tmp_path, "README.md", "not python")
    files = lambda r: sorted({l.split(":")[0] for l in r.stdout.splitlines()})  # noqa: E731
    assert files(tfg("check")) == ["legacy/old.py", "pkg/keep_pb2.py", "pkg/mod.py"]
    # walking from a subfolder still honours the parent's .gitignore
    assert files(tfg("check", "pkg")) == ["pkg/keep_pb2.py", "pkg/mod.py"]
    write(tmp_path, "pyproject.toml", '[tool.tflint-grad]\nextend-exclude = ["legacy/"]\n')
    assert files(tfg("check")) == ["pkg/keep_pb2.py", "pkg/mod.py"]
    # explicit files are linted unless --force-exclude
    assert files(tfg("check", "legacy/old.py", "generated/a.py")) == ["generated/a.py", "legacy/old.py"]
    assert files(tfg("check", "--force-exclude", "legacy/old.py", "pkg/mod.py", "build/b.py")) == ["pkg/mod.py"]
    write(tmp_path, "pyproject.toml", "[tool.tflint-grad]\nrespect-gitignore = false\nexclude = []\n")
    assert "generated/a.py" in files(tfg("check"))
    assert "build/b.py" in files(tfg("check"))


def test_explicit_file_with_any_extension_and_dir_named_like_a_file(tfg, tmp_path):
    write(tmp_path, "script", BAD)
    write(tmp_path, "weird.py/inner.py", BAD)  # a folder named weird.py
    r = tfg("check", "script", "weird.py")
    assert [l.split(":")[0] for l in r.stdout.splitlines()] == ["script", "weird.py/inner.py"]
    assert r.returncode == 1


def test_unreadable_files_are_io_errors(tfg, tmp_path):
    write(tmp_path, "a.py", BAD)
    (tmp_path / "dangling.py").symlink_to(tmp_path / "missing-target.py")
    r = tfg("check")
    assert r.returncode == 2
    assert "dangling.py: cannot read: broken symbolic link" in r.stderr
    assert r.stdout.startswith("a.py:4:29: TFG101")  # the run went on
    if os.geteuid() != 0:  # root reads anything
        p = write(tmp_path, "secret.py", BAD)
        p.chmod(0)
        try:
            r = tfg("check", "secret.py")
            assert r.returncode == 2 and "secret.py: cannot read: Permission denied" in r.stderr
        finally:
            p.chmod(0o644)


def test_undecodable_file_is_tfg000(tfg, tmp_path):
    (tmp_path / "latin.py").write_bytes(b"import tensorflow as tf\nx = '\xe9'\n")
    r = tfg("check")
    assert r.returncode == 1
    assert r.stdout.startswith("latin.py:2:6: TFG000 the file is not valid utf-8")


def test_no_python_files(tfg, tmp_path):
    write(tmp_path, "notes.txt", "x")
    r = tfg("check")
    assert r.returncode == 0 and "no Python files found" in r.stderr


def test_symlinked_file_is_fixed_through_the_link(tfg, tmp_path):
    real = write(tmp_path, "real/bad.py", BAD)
    (tmp_path / "link.py").symlink_to(real)
    r = tfg("check", "--fix", "link.py")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "link.py").is_symlink()
    assert real.read_text() == BAD_FIXED


# -- fixes -----------------------------------------------------------------------------
def test_unsafe_fixes(tfg, tmp_path, monkeypatch):
    patch_rules(monkeypatch, RiskyCall)
    p = write(tmp_path, "a.py", "import tensorflow as tf\nrisky()\n")
    r = tfg("check", "-j", "1")
    assert r.stdout.startswith("a.py:2:1: TFG991 risky call")  # no [*]: the fix is unsafe
    assert "1 more with --fix --unsafe-fixes" in r.stderr
    assert "[*]" in tfg("check", "--unsafe-fixes").stdout
    r = tfg("check", "--fix")
    assert p.read_text() == "import tensorflow as tf\nrisky()\n" and r.returncode == 1
    r = tfg("check", "--diff", "--unsafe-fixes")
    assert "+careful()" in r.stdout and r.returncode == 1
    r = tfg("check", "--fix", "--unsafe-fixes", "--show-fixes")
    assert p.read_text() == "import tensorflow as tf\ncareful()\n"
    assert r.returncode == 0
    assert "Fixed 1 issue" in r.stderr and "1 × TFG991" in r.stderr
    r = tfg("check", "--fix", "--unsafe-fixes")
    assert r.returncode == 0 and "Fixed 0 issues" in r.stderr


def test_fix_that_does_not_parse_is_not_written(tfg, tmp_path, monkeypatch):
    patch_rules(monkeypatch, BreaksCode)
    src = "import tensorflow as tf\nbreakme = 1\n"
    p = write(tmp_path, "a.py", src)
    r = tfg("check", "--fix")
    assert p.read_text() == src
    assert r.returncode == 1
    assert "a.py: 1 fix(es) not applied: the fixed code would not parse" in r.stderr
    r = tfg("check", "--diff")
    assert r.stdout == "" and r.returncode == 0


def test_fix_keeps_encoding_bom_and_crlf(tfg, tmp_path):
    p = tmp_path / "a.py"
    p.write_bytes(b"\xef\xbb\xbf" + BAD.replace("\n", "\r\n").encode())
    r = tfg("check", "--fix")
    assert r.returncode == 0, r.stderr
    assert p.read_bytes() == b"\xef\xbb\xbf" + BAD_FIXED.replace("\n", "\r\n").encode()


def test_internal_error_exits_2_and_the_run_goes_on(tfg, tmp_path, monkeypatch):
    patch_rules(monkeypatch, Crashes)
    write(tmp_path, "a.py", "import tensorflow as tf\ncrashme = 1\n")
    write(tmp_path, "b.py", BAD)
    r = tfg("check")
    assert r.returncode == 2
    assert "a.py: internal error in rule TFG993 (crashes): ValueError: boom" in r.stderr
    assert r.stdout.startswith("b.py:4:29: TFG101")
    assert tfg("check", "--exit-zero").returncode == 2
    r = tfg("check", "-v", "a.py")
    assert "Traceback" in r.stderr


def test_jobs_in_process_pool_matches(tfg, tmp_path):
    for i in range(10):
        write(tmp_path, f"m{i}.py", [BAD, PY2][i % 2])
    one = tfg("check", "-j", "1", "--no-cache")
    two = tfg("check", "-j", "2", "--no-cache")
    assert one.stdout == two.stdout and one.returncode == two.returncode == 1


def test_cache_reuses_and_invalidates(tfg, tmp_path):
    p = write(tmp_path, "a.py", BAD)
    first = tfg("check", "--format", "json")
    assert (tmp_path / ".tflint-grad-cache").is_dir()
    second = tfg("check", "--format", "json")
    assert first.stdout == second.stdout
    p.write_text(CLEAN)
    assert tfg("check").returncode == 0
    # the cache folder is never linted, and --no-cache writes nothing
    shutil.rmtree(tmp_path / ".tflint-grad-cache")
    tfg("check", "--no-cache")
    assert not (tmp_path / ".tflint-grad-cache").exists()


# -- tracing flags ---------------------------------------------------------------------
def test_confirm_without_tensorflow_exits_2(tmp_path):
    """The real console script, in an environment where ``import tensorflow`` fails: a
    ``sitecustomize`` on PYTHONPATH blocks it (``sys.modules["tensorflow"] = None``: the import
    raises ModuleNotFoundError and ``find_spec`` says None, as when TensorFlow is not installed)."""
    blocker = tmp_path / "no-tensorflow"
    write(blocker, "sitecustomize.py", "import sys\nsys.modules['tensorflow'] = None  # import tensorflow fails\n")
    env = {"PYTHONPATH": os.pathsep.join([str(blocker), _env()["PYTHONPATH"]])}
    probe = subprocess.run(
        [sys.executable, "-c", "import tensorflow"], env={**_env(), **env}, capture_output=True, text=True, timeout=60
    )
    assert probe.returncode == 1 and "ModuleNotFoundError" in probe.stderr  # the environment is what we claim
    project = tmp_path / "project"
    write(project, "a.py", BAD)
    for flag in ("--confirm", "--confirm-all"):
        r = run("check", flag, cwd=project, env=env)
        assert r.returncode == 2, r.stderr.decode()
        assert r.stderr.decode().strip() == f"tflint-grad: error: {cli.CONFIRM_NEEDS_TF}"
        assert r.stdout == b""


def test_trace_settings_come_from_config_then_flags(tmp_path):
    from tflint_grad.config import parse
    from tflint_grad.settings import TraceSettings

    cfg = parse(
        {"trace": {"steps": 3, "timeout": 30, "memory": 1024, "args": "--epochs 1 --name 'a b'"}},
        tmp_path / "pyproject.toml",
    )
    assert (cfg.trace.steps, cfg.trace.timeout, cfg.trace.memory_mb) == (3, 30.0, 1024)
    ns = cli.build_parser().parse_args(["check", "--trace-memory", "512", "--trace-steps", "7", "--no-cache"])
    got = cli._trace_settings(ns, cfg, 2)
    assert isinstance(got, TraceSettings)
    assert (got.steps, got.timeout, got.memory_mb, got.jobs, got.cache) == (7, 30.0, 512, 2, False)
    assert got.args == ("--epochs", "1", "--name", "a b")
    ns = cli.build_parser().parse_args(["check", "--trace-args", "--lr 0.1", "--confirm-all"])
    got = cli._trace_settings(ns, cfg, 1)
    assert got.args == ("--lr", "0.1") and got.confirm_all and got.steps == 3


@pytest.mark.parametrize(
    "args",
    [
        ["--trace-steps", "0"],
        ["--trace-timeout", "-1"],
        ["-j", "-2"],
        ["--diff", "--confirm"],
        ["--format", "xml"],
        ["--stdin-filename", "x.py", "a.py"],
    ],
)
def test_bad_flags_exit_2(tfg, tmp_path, args):
    write(tmp_path, "a.py", BAD)
    assert tfg("check", *args).returncode == 2


# -- other subcommands -----------------------------------------------------------------
def test_rules_and_rule(tfg):
    r = tfg("rules")
    assert r.returncode == 0
    assert r.stdout.splitlines()[0].split() == ["CODE", "NAME", "FIX", "SUMMARY"]
    row = next(l for l in r.stdout.splitlines() if l.startswith("TFG101"))
    assert "gradient-wrt-non-trainable" in row and " yes " in row
    data = json.loads(tfg("rules", "--format", "json").stdout)
    assert {"code", "name", "fixable", "summary"} <= set(data[0])
    doc = tfg("rule", "TFG101").stdout
    assert doc.startswith("# TFG101: gradient-wrt-non-trainable\n")
    assert "## Why is this bad?" in doc
    assert tfg("rule", "gradient-wrt-non-trainable").stdout == doc
    assert tfg("rule", "tfg101").stdout == doc
    r = tfg("rule", "TFG1O1")
    assert r.returncode == 2 and "unknown rule 'TFG1O1' (did you mean TFG101?)" in r.stderr


def test_config_show(tfg, tmp_path):
    write(
        tmp_path,
        "pyproject.toml",
        '[tool.tflint-grad]\nper-file-ignores = { "tests/*" = ["TFG101"] }\n[tool.tflint-grad.trace]\nsteps = 2\n',
    )
    write(tmp_path, "tests/t.py", BAD)
    r = tfg("config", "--show", "tests/t.py")
    assert r.returncode == 0
    assert "config file:       " + str(tmp_path / "pyproject.toml") in r.stdout
    assert "steps=2" in r.stdout
    enabled = r.stdout.split("enabled rules")[1].split("disabled rules")[0]
    assert "TFG000" in enabled and "TFG101" not in enabled
    data = json.loads(tfg("config", "--show", "--format", "json", "tests/t.py").stdout)
    assert "TFG101" in data["disabled"] and data["trace"]["steps"] == 2
    data = json.loads(tfg("config", "--format", "json", "--isolated").stdout)
    assert data["config_file"] is None and "TFG101" in data["enabled"]


def test_version_and_help(tfg):
    r = tfg("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"tflint-grad {__version__}"
    r = tfg("check", "--help")
    assert r.returncode == 0 and "--unsafe-fixes" in r.stdout and "cell N" in r.stdout
    assert tfg().returncode == 2


def test_server_without_pygls_exits_2(tfg, monkeypatch):
    monkeypatch.setitem(sys.modules, "pygls", None)
    r = tfg("server")
    assert r.returncode == 2
    assert 'pip install "tflint-grad[lsp]"' in r.stderr


def test_cache_key_is_the_file_location(tfg, tmp_path, monkeypatch):
    write(tmp_path, "pyproject.toml", '[tool.tflint-grad]\nper-file-ignores = { "tests/*" = ["TFG101"] }\n')
    write(tmp_path, "tests/a.py", BAD)
    write(tmp_path, "src/a.py", BAD)
    monkeypatch.chdir(tmp_path / "tests")
    assert tfg("check", "a.py").returncode == 0
    monkeypatch.chdir(tmp_path / "src")
    r = tfg("check", "a.py")  # same display path and bytes, another folder: not a cache hit
    assert r.returncode == 1 and r.stdout.startswith("a.py:4:29: TFG101")


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.skipif(
    __import__("importlib").util.find_spec("tensorflow") is None and not os.environ.get("CI"),
    reason="needs the trace extra",
)
def test_confirm_end_to_end_with_tensorflow(tmp_path):
    """Two traces (one run, -j 2); the later runs reuse them from the trace cache: disabling the
    trace-only TFG105 (--ignore, config) filters what the trace discovers."""
    project, cache = tmp_path / "project", tmp_path / "trace-cache"
    project.mkdir()
    shutil.copy(ROOT / "examples" / "seeds" / "004_bn_gradient_tape.py", project / "train.py")
    write(
        project,
        "disconnected.py",
        textwrap.dedent("""\
        import tensorflow as tf

        model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(4)])
        head = tf.keras.layers.Dense(1)
        head.build((None, 4))  # built, never called: no path from its variables to the loss
        opt = tf.keras.optimizers.SGD(0.01)
        for step in range(100):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(tf.square(model(tf.ones((8, 3)))))
            variables = model.trainable_variables + head.trainable_variables
            grads = tape.gradient(loss, variables)
            opt.apply_gradients(zip(grads, variables))
    """),
    )
    env = {"TFLINT_GRAD_CACHE_DIR": str(cache)}
    trace = ("check", "train.py", "disconnected.py", "--confirm-all", "--trace-steps", "2", "-j", "2")
    proc = run(*trace, "--format", "json", cwd=project, env=env)
    assert proc.returncode == 1, proc.stderr.decode()
    data = json.loads(proc.stdout)
    tfg101 = [f for f in data["findings"] if f["code"] == "TFG101"]
    assert tfg101 and tfg101[0]["verdict"] == "confirmed" and "moving_mean" in tfg101[0]["evidence"]
    tfg105 = [f for f in data["findings"] if f["code"] == "TFG105"]
    assert [(f["path"], f["line"], f["verdict"]) for f in tfg105] == [("disconnected.py", 11, "confirmed")], data[
        "findings"
    ]
    assert "`dense_1/kernel`, `dense_1/bias`" in tfg105[0]["message"]

    text = run(*trace, "--ignore", "TFG105", cwd=project, env=env)
    out = text.stdout.decode()
    assert "TFG105" not in out, out
    lines = out.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("train.py:19:31: TFG101"))
    assert lines[i + 1].startswith("    = confirmed: ")
    write(tmp_path / "config", "pyproject.toml", '[tool.tflint-grad]\nextend-ignore = ["TFG105"]\n')
    text = run(*trace, "--config", str(tmp_path / "config" / "pyproject.toml"), cwd=project, env=env)
    assert text.returncode == 1 and "TFG105" not in text.stdout.decode() and "TFG101" in text.stdout.decode()


def test_trace_allow_read_from_flags_and_config(tmp_path):
    from tflint_grad.config import parse

    cfg = parse({"trace": {"allow-read": ["../datasets", "/srv/data"]}}, tmp_path / "pyproject.toml")
    ns = cli.build_parser().parse_args(["check", "--trace-allow-read", "/mnt/a", "--trace-allow-read", "rel"])
    opts = cli._trace_settings(ns, cfg, 1)
    assert opts.allow_read == (
        "/mnt/a",
        os.path.abspath("rel"),
        os.path.join(str(tmp_path), "../datasets"),
        "/srv/data",
    )
    from tflint_grad.config import ConfigError

    with pytest.raises(ConfigError, match="must be a path or a list of paths"):
        parse({"trace": {"allow-read": 3}}, tmp_path / "pyproject.toml")
