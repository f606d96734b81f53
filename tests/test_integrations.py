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

# the model (with a BatchNormalization, so `.variables` visibly holds non-trainable variables) is
# on line 1: the flagged `model.variables` stays at 4:29
BAD = textwrap.dedent("""\
    import tensorflow as tf; model = tf.keras.Sequential([tf.keras.layers.BatchNormalization()])
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


# -- 4. noqa: real comments only, exact codes, --add-noqa ----------------------------------
SEED4 = (SEEDS / "004_bn_gradient_tape.py").read_text()


def test_noqa_in_a_string_or_docstring_silences_nothing(tfg, tmp_path):
    write(tmp_path, "doc.py", '"""Silence a file with # tflint-grad: noqa."""\n' + SEED4)
    write(tmp_path, "str.py", SEED4.replace("model.variables)\n", "model.variables); s = '# noqa'\n", 1))
    write(tmp_path, "real.py", "# tflint-grad: noqa\n" + SEED4)
    r = tfg("check", "--no-cache")
    codes = r.codes()
    assert ("doc.py", "TFG101") in codes and ("doc.py", "TFG201") in codes
    assert ("str.py", "TFG101") in codes
    assert not [c for c in codes if c[0] == "real.py"]


def test_noqa_codes_are_exact(tfg, tmp_path):
    write(tmp_path, "prefix.py", SEED4.replace("model.variables)\n", "model.variables)  # noqa: TFG1\n", 1))
    write(tmp_path, "exact.py", SEED4.replace("model.variables)\n", "model.variables)  # NOQA:tfg101\n", 1))
    codes = tfg("check", "--no-cache").codes()
    assert ("prefix.py", "TFG101") in codes  # a prefix is not a code (ruff's rule)
    assert ("exact.py", "TFG101") not in codes and ("exact.py", "TFG201") in codes


def test_add_noqa_silences_every_finding_and_keeps_the_code(tfg, tmp_path):
    write(tmp_path, "a.py", SEED4)
    write(tmp_path, "b.py", BAD.replace("model.variables)", "model.variables)  # noqa: E501"))
    r = tfg("check", "--add-noqa")
    assert r.returncode == 0 and "Added 3 noqa directives." in r.stderr
    assert "  y = model(np.expand_dims(x, axis=1))  # noqa: TFG201\n" in (tmp_path / "a.py").read_text()
    assert (tmp_path / "b.py").read_text().endswith("model.variables)  # noqa: E501, TFG101\n")
    assert tfg("check", "--no-cache").returncode == 0
    assert "Added 0 noqa directives." in tfg("check", "--add-noqa").stderr  # idempotent
    stripped = (tmp_path / "a.py").read_text().replace("  # noqa: TFG201", "").replace("  # noqa: TFG101", "")
    assert stripped == SEED4


def test_add_noqa_leaves_strings_alone(tfg, tmp_path):
    line = 'tag = "# noqa: E501"; grads = tape.gradient(loss, model.variables)'
    write(tmp_path, "s.py", BAD.replace("grads = tape.gradient(loss, model.variables)", line))
    assert "Added 1 noqa directive." in tfg("check", "--add-noqa").stderr
    assert f"{line}  # noqa: TFG101\n" in (tmp_path / "s.py").read_text()
    assert tfg("check", "--no-cache").returncode == 0


# -- 5. small defects ---------------------------------------------------------------------
def test_syntax_error_is_reported_whatever_the_selection(tfg, tmp_path):
    write(tmp_path, "s.py", "import tensorflow as tf\ndef f(:\n pass\n")
    write(tmp_path, "pyproject.toml", '[tool.tflint-grad]\nselect = ["TFG1"]\n')
    r = tfg("check", "--select", "TFG1")
    assert r.returncode == 1 and r.codes() == [("s.py", "TFG000")]
    assert tfg("check").codes() == [("s.py", "TFG000")]


def test_a_non_tf_file_is_skipped_whatever_its_content(tfg, tmp_path):
    (tmp_path / "bytes.py").write_bytes(b"print(1)\n\xff\n")
    write(tmp_path, "syntax.py", "def f(:\n")
    (tmp_path / "tf_bytes.py").write_bytes(b"import tensorflow as tf\n\xff\n")
    r = tfg("check", "--no-cache")
    assert r.codes() == [("tf_bytes.py", "TFG000")]


def test_unreadable_file_is_not_all_checks_passed(tfg, tmp_path, monkeypatch):
    write(tmp_path, "ok.py", BAD.replace("model.variables", "model.trainable_variables"))
    write(tmp_path, "locked.py", BAD)
    real_open = open

    def deny(path, *a, **k):  # root reads everything: simulate the permission error
        if str(path).endswith("locked.py"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", deny)
    r = tfg("check", "--no-cache", "-j", "1")
    assert r.returncode == 2
    assert "locked.py: cannot read: Permission denied" in r.stderr
    assert "All checks passed" not in r.stderr and "1 error" in r.stderr


def test_fix_in_a_read_only_folder_rewrites_the_writable_file(tfg, tmp_path, monkeypatch):
    import tempfile

    target = write(tmp_path, "ro/train.py", BAD)

    def no_temp(*a, **k):  # a folder where no file can be created (root ignores chmod 555)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", no_temp)
    r = tfg("check", "--fix", "--no-cache", "ro")
    assert r.returncode == 0, r.stderr
    assert target.read_text() == BAD.replace("model.variables", "model.trainable_variables")


def test_version_does_not_import_libcst(tmp_path):
    code = "import sys; from tflint_grad import cli; cli.main(['--version']); print('libcst' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.splitlines() == [f"tflint-grad {cli.__version__}", "False"]


# -- 6. comforts ----------------------------------------------------------------------------
def test_color_follows_flag_and_environment(tmp_path):
    write(tmp_path, "a.py", BAD)
    plain = run("check", "--no-cache", "a.py", cwd=tmp_path, env={"NO_COLOR": "", "FORCE_COLOR": ""}).stdout
    assert b"\x1b[" not in plain  # not a terminal
    forced = run("check", "--no-cache", "a.py", cwd=tmp_path, env={"FORCE_COLOR": "1"}).stdout
    assert b"\x1b[31m\x1b[1mTFG101\x1b[0m" in forced and b"\x1b[1ma.py\x1b[0m:4:29" in forced
    always = run("check", "--no-cache", "--color", "always", "a.py", cwd=tmp_path, env={"NO_COLOR": "1"}).stdout
    assert b"\x1b[" in always
    never = run("check", "--no-cache", "--color", "never", "a.py", cwd=tmp_path, env={"FORCE_COLOR": "1"}).stdout
    assert b"\x1b[" not in never
    assert (
        forced.replace(b"\x1b[31m", b"").replace(b"\x1b[1m", b"").replace(b"\x1b[36m", b"").replace(b"\x1b[0m", b"")
        == plain
    )


def test_color_on_a_terminal_unless_no_color(tmp_path):
    pty = pytest.importorskip("pty")
    write(tmp_path, "a.py", BAD)
    exe = shutil.which("tflint-grad") or sys.executable

    def on_tty(env: dict[str, str]) -> bytes:
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            [exe, "check", "--no-cache", "a.py"],
            cwd=tmp_path,
            stdout=slave,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "NO_COLOR": "", "FORCE_COLOR": "", "TERM": "xterm", **env},
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        proc.wait(timeout=60)
        os.close(master)
        return b"".join(chunks)

    assert b"\x1b[" in on_tty({})
    assert b"\x1b[" not in on_tty({"NO_COLOR": "1"})


def test_show_source(tfg, tmp_path):
    write(tmp_path, "a.py", BAD)
    r = tfg("check", "--no-cache", "--show-source", "a.py")
    lines = r.stdout.splitlines()
    assert lines[0].startswith("a.py:4:29: TFG101")
    assert lines[2] == "4 | grads = tape.gradient(loss, model.variables)"
    assert lines[3] == "  | " + " " * 28 + "^" * len("model.variables")
    cached = tfg("check", "--show-source", "a.py")  # twice: the second answer comes from the cache
    assert tfg("check", "--show-source", "a.py").stdout == cached.stdout == r.stdout


def test_fix_only_and_exit_non_zero_on_fix(tfg, tmp_path):
    write(tmp_path, "a.py", SEED4)
    r = tfg("check", "--fix-only", "--no-cache")
    assert r.returncode == 0 and r.stdout == "" and "Fixed 1 issue (1 remaining)" in r.stderr
    write(tmp_path, "a.py", BAD)
    r = tfg("check", "--fix", "--no-cache")
    assert r.returncode == 0  # fixed, nothing left
    write(tmp_path, "a.py", BAD)
    r = tfg("check", "--fix", "--exit-non-zero-on-fix", "--no-cache")
    assert r.returncode == 1 and "Fixed 1 issue" in r.stderr
    r = tfg("check", "--fix", "--exit-non-zero-on-fix", "--no-cache")
    assert r.returncode == 0  # nothing fixed this time
    write(tmp_path, "a.py", BAD)
    assert tfg("check", "--fix-only", "--exit-non-zero-on-fix", "--no-cache").returncode == 1


def test_command_line_exclude_extend_exclude_extend_ignore(tfg, tmp_path):
    write(tmp_path, "pyproject.toml", '[tool.tflint-grad]\nextend-exclude = ["legacy/"]\n')
    for name in ("src/a.py", "legacy/b.py", "third_party/c.py", "build/d.py"):
        write(tmp_path, name, SEED4)
    files = lambda r: sorted({p for p, _ in r.codes()})  # noqa: E731
    assert files(tfg("check")) == ["src/a.py", "third_party/c.py"]
    assert files(tfg("check", "--extend-exclude", "third_party/")) == ["src/a.py"]
    # --exclude replaces the exclude list (the defaults too: build/ comes back), as ruff's
    assert files(tfg("check", "--exclude", "third_party/")) == ["build/d.py", "src/a.py"]  # extend-exclude stays
    r = tfg("check", "--extend-ignore", "TFG201", "src")
    assert r.codes() == [("src/a.py", "TFG101")]


def test_cache_dir(tfg, tmp_path):
    write(tmp_path, "proj/a.py", BAD)
    r1 = tfg("check", "--cache-dir", "cache", "proj")
    r2 = tfg("check", "--cache-dir", "cache", "proj")
    assert r1.stdout == r2.stdout and r1.returncode == r2.returncode == 1
    assert list((tmp_path / "cache").rglob("*.json"))
    assert not (tmp_path / ".tflint-grad-cache").exists() and not (tmp_path / "proj" / ".tflint-grad-cache").exists()


def test_junit_format(tfg, tmp_path):
    import xml.etree.ElementTree as ET

    write(tmp_path, "a.py", SEED4)
    write(tmp_path, "clean.py", "import tensorflow as tf\n")
    root = ET.fromstring(tfg("check", "--format", "junit").stdout)
    assert root.tag == "testsuites" and root.get("failures") == "2"
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "a.py"
    cases = suite.findall("testcase")
    assert [(c.get("name"), c.get("line")) for c in cases] == [
        ("tflint-grad.TFG201", "17"),
        ("tflint-grad.TFG101", "19"),
    ]
    assert cases[1].find("failure").text.startswith("line 19, col 31, gradients taken")
    empty = ET.fromstring(tfg("check", "--format", "junit", "clean.py").stdout)
    assert empty.get("failures") == "0" and empty.find("testsuite/testcase").get("name") == "No errors found"


def test_gitlab_format(tfg, tmp_path, monkeypatch):
    write(tmp_path, "src/a.py", SEED4)
    monkeypatch.setenv("CI_PROJECT_DIR", str(tmp_path))
    data = json.loads(tfg("check", "--format", "gitlab", "src").stdout)
    assert [(d["check_name"], d["location"]["path"], d["location"]["positions"]["begin"]["line"]) for d in data] == [
        ("TFG201", "src/a.py", 17),
        ("TFG101", "src/a.py", 19),
    ]
    assert all(d["severity"] in ("info", "minor", "major", "critical", "blocker") for d in data)
    assert len({d["fingerprint"] for d in data}) == 2
    again = json.loads(tfg("check", "--format", "gitlab", "src").stdout)
    assert [d["fingerprint"] for d in again] == [d["fingerprint"] for d in data]  # stable across runs


def test_watch_relints_on_change(tmp_path):
    target = write(tmp_path, "a.py", BAD.replace("model.variables", "model.trainable_variables"))
    exe = shutil.which("tflint-grad")
    command = [exe] if exe else [sys.executable, "-m", "tflint_grad"]
    proc = subprocess.Popen(
        [*command, "check", "--watch", "--no-cache", "a.py"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "TFLINT_GRAD_WATCH_INTERVAL": "0.1"},
    )
    try:
        import selectors
        import time

        def wait_for(stream, needle: bytes, timeout: float = 60) -> bytes:
            sel = selectors.DefaultSelector()
            sel.register(stream, selectors.EVENT_READ)
            seen = b""
            deadline = time.monotonic() + timeout
            while needle not in seen and time.monotonic() < deadline:
                if sel.select(timeout=0.5):
                    seen += os.read(stream.fileno(), 65536)
            return seen

        assert b"All checks passed" in wait_for(proc.stderr, b"All checks passed")
        time.sleep(0.2)
        target.write_text(BAD + "# edited\n")
        assert b"a.py:4:29: TFG101" in wait_for(proc.stdout, b"TFG101")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
