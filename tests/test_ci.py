"""CI runs the README's test command with the code checks before the tests; `make ci` runs CI."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands(path: Path) -> list[str]:
    """The commands a shell script or Makefile target runs (comments and shell options dropped)."""
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith(("#", "set ", "cd ", "export "))]


def test_ci_runs_the_readme_test_command_with_checks_before_the_tests() -> None:
    blocks = re.findall(r"```console\n(.*?)\n```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    readme = blocks[1].strip()  # the second set-up command: install the test extras, run the tests
    install, _, test = readme.rpartition(" && ")
    steps = _commands(ROOT / ".ci" / "run")
    assert steps == [install, "ruff format --check .", "ruff check .", "mypy", test], steps


def test_make_ci_runs_the_ci_script_and_contributing_names_it() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^ci:.*\n\t\.ci/run$", makefile, re.M), "the `ci` target must run .ci/run"
    assert "`make ci`" in (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
