"""``python -m tflint_grad``: the same as the ``tflint-grad`` command."""

import sys

from tflint_grad.cli import console

if __name__ == "__main__":
    sys.exit(console())
