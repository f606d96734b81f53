"""Tracing: runs a script in a sandboxed TensorFlow subprocess to confirm findings.

Only ``harness.py`` (and what it imports) touches TensorFlow, and it runs in the child
process. Everything importable from the linter's own process stays TF-free.
"""
