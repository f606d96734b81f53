"""tflint-grad: a linter for TensorFlow training scripts.

The static path (this package minus ``tflint_grad.tracer.harness``) never imports
TensorFlow; tracing runs TensorFlow in a sandboxed subprocess.
"""

from __future__ import annotations

import os as _os

__version__ = "0.1.0"

# In a source checkout the rule files live in the top-level ``rules/`` folder; an
# installed wheel ships them as ``tflint_grad/rules`` (see pyproject.toml). Make
# ``tflint_grad.rules`` importable in both layouts.
_here = _os.path.dirname(_os.path.abspath(__file__))
if not _os.path.isdir(_os.path.join(_here, "rules")):
    _checkout = _os.path.dirname(_here)
    if _os.path.isfile(_os.path.join(_checkout, "rules", "__init__.py")):
        __path__.append(_checkout)  # type: ignore[name-defined]
