"""The static path never imports TensorFlow (nor keras / tf_keras): not the CLI, not its
worker processes, not the engine. A pre-commit hook or an editor must stay fast and must
work without TensorFlow installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
FORBIDDEN = ("tensorflow", "keras", "tf_keras")


def _env(*front: Path) -> dict[str, str]:
    env = dict(os.environ)
    parts = [str(p) for p in front] + [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def _poison(tmp_path: Path) -> Path:
    """Fake top-level packages that record any import attempt, in any process."""
    poison = tmp_path / "poison"
    for name in FORBIDDEN:
        pkg = poison / name
        pkg.mkdir(parents=True)
        (pkg / "__init__.py").write_text(
            textwrap.dedent(f"""\
            import os
            with open(os.path.join({str(tmp_path)!r}, "imported-{name}-%d" % os.getpid()), "w") as f:
                f.write("")
            raise ImportError("tflint-grad's static path must not import {name}")
        """)
        )
    return poison


def test_cli_with_worker_processes_never_imports_tensorflow(tmp_path):
    poison = _poison(tmp_path)
    exe = shutil.which("tflint-grad")
    cmd = [exe] if exe else [sys.executable, "-m", "tflint_grad"]
    for jobs in ("2", "1"):
        proc = subprocess.run(
            [*cmd, "check", str(EXAMPLES), "-j", jobs, "--no-cache", "--format", "json", "-v"],
            cwd=tmp_path,
            env=_env(poison),
            capture_output=True,
            timeout=300,
        )
        assert proc.returncode in (0, 1), proc.stderr.decode()
        assert b'"files_checked"' in proc.stdout
        if jobs == "2":
            assert b"with 2 process(es)" in proc.stderr  # the pool really ran
    assert sorted(p.name for p in tmp_path.glob("imported-*")) == []


def test_engine_and_in_process_cli_never_import_tensorflow(tmp_path):
    code = textwrap.dedent(f"""\
        import sys
        from pathlib import Path
        from tflint_grad.engine import lint_bytes
        from tflint_grad.fixes import fix_text
        n = 0
        for p in sorted(Path({str(EXAMPLES)!r}).rglob("*.py")):
            r = lint_bytes(p.read_bytes(), str(p))
            fix_text(p.read_text(), str(p), unsafe=True)
            n += len(r.findings)
        assert n > 0
        from tflint_grad import cli
        rc = cli.main(["check", {str(EXAMPLES)!r}, "-j", "1", "--no-cache", "-q", "--format", "sarif"])
        assert rc in (0, 1), rc
        cli.main(["rules"]); cli.main(["rule", "TFG101"]); cli.main(["config", "--show"])
        bad = [m for m in {FORBIDDEN!r} if m in sys.modules]
        assert not bad, bad
        print("ok", n)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(), capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"ok" in proc.stdout
