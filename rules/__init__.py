"""tflint-grad rules: one file per rule, discovered by ``tflint_grad.registry``."""
