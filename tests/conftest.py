from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# The tests import the checkout's package, whichever is installed.
sys.path.insert(0, str(ROOT))


def have_tensorflow() -> bool:
    import importlib.util

    return importlib.util.find_spec("tensorflow") is not None


requires_tf = pytest.mark.skipif(
    not have_tensorflow() and not os.environ.get("CI"),
    reason="needs the trace extra: pip install 'tflint-grad[trace]'",
)
