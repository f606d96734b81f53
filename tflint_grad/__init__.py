"""tflint-grad: a linter for TensorFlow training scripts.

The static path (this package minus ``tflint_grad.tracer.harness``) never imports
TensorFlow; tracing runs TensorFlow in a sandboxed subprocess.
"""

from __future__ import annotations

__version__ = "0.1.0"
