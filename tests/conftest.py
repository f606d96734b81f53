from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# The tests run against an editable install of this checkout (`pip install -e`, see README):
# setuptools maps `tflint_grad.rules` to the top-level `rules/` folder.


def have_tensorflow() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


requires_tf = pytest.mark.skipif(
    not have_tensorflow() and not os.environ.get("CI"),
    reason="needs the trace extra: pip install 'tflint-grad[trace]'",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-snapshots",
        action="store_true",
        default=False,
        help="rewrite tests/snapshots/ from the current output (then review the diff)",
    )


@pytest.fixture
def update_snapshots(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-snapshots"))
