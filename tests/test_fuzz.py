"""Property-based attacks on the static path: never a traceback, always a result."""

from __future__ import annotations

import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tflint_grad.engine import lint_bytes
from tflint_grad.fixes import fix_text, parses

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").rglob("*.py"))
REAL = [p.read_text() for p in EXAMPLES]
TOKENS = [
    "tf.GradientTape()",
    "model.variables",
    "(",
    ")",
    "[",
    "]",
    ":",
    "\n",
    "    ",
    "with ",
    " as tape",
    "tape.gradient(",
    "training=",
    "tf.",
    "keras",
    "lambda",
    "**",
    "*",
    ",",
    "=",
    "'",
    '"',
    "#",
    "\t",
    "\r\n",
    "print ",
    "\\",
    "@",
    "yield",
]

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(raw: bytes, path: str = "fuzz.py"):
    result = lint_bytes(raw, path)
    assert not result.errors, [e.traceback for e in result.errors]
    for f in result.findings:
        assert f.line >= 1 and f.column >= 1
        if f.code == "TFG000":
            assert (
                f.message.startswith("cannot")
                or "not valid" in f.message
                or "encoding" in f.message
                or "notebook" in f.message
            )
    return result


@FAST
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(raw):
    _check(b"import tensorflow as tf\n" + raw)


@FAST
@given(st.text(max_size=2000))
def test_arbitrary_text(text):
    _check(("import tensorflow as tf\n" + text).encode("utf-8", "surrogatepass"))


@FAST
@given(st.binary(max_size=500))
def test_arbitrary_notebook_bytes(raw):
    _check(raw, "fuzz.ipynb")


@FAST
@given(st.data())
def test_mutated_real_files(data):
    text = data.draw(st.sampled_from(REAL))
    lines = text.splitlines(keepends=True)
    op = data.draw(st.sampled_from(["truncate", "delete", "shuffle", "insert", "crlf", "bom", "tabs", "longline"]))
    rnd = random.Random(data.draw(st.integers(0, 2**32)))
    if op == "truncate":
        text = text[: rnd.randrange(len(text) + 1)]
    elif op == "delete" and lines:
        for _ in range(rnd.randint(1, 5)):
            if lines:
                lines.pop(rnd.randrange(len(lines)))
        text = "".join(lines)
    elif op == "shuffle":
        rnd.shuffle(lines)
        text = "".join(lines)
    elif op == "insert":
        for _ in range(rnd.randint(1, 10)):
            i = rnd.randrange(len(text) + 1)
            text = text[:i] + rnd.choice(TOKENS) + text[i:]
    elif op == "crlf":
        text = text.replace("\n", "\r\n")
    elif op == "bom":
        text = "\ufeff" + text
    elif op == "tabs":
        text = text.replace("    ", "\t", rnd.randint(1, 20))
    elif op == "longline":
        text += "x = " + "+".join(["tf.constant(1.0)"] * 500) + "\n"
    _check(text.encode("utf-8"))
    # --fix on mutated input: idempotent, never writes code that does not parse
    if parses(text):
        once = fix_text(text, "fuzz.py", unsafe=True)
        assert parses(once.text)
        twice = fix_text(once.text, "fuzz.py", unsafe=True)
        assert twice.text == once.text


def test_deeply_nested_expression():
    _check(("import tensorflow as tf\nx = " + "(" * 2000 + "1" + ")" * 2000 + "\n").encode())
    _check(("import tensorflow as tf\nx = " + "[" * 300 + "]" * 300 + "\n").encode())
    _check(("import tensorflow as tf\nx = " + " + ".join(["a"] * 20000) + "\n").encode())


def test_huge_file():
    body = "".join(f"v{i} = tf.Variable(tf.zeros([{i % 7 + 1}]))\n" for i in range(4000))
    _check(("import tensorflow as tf\n" + body).encode())


def test_empty_and_whitespace_files():
    for raw in (b"", b"\n", b"   ", b"\xef\xbb\xbf", b"# tensorflow\n", b"\x00\x00tensorflow"):
        _check(raw)
        _check(raw, "x.ipynb")


def test_notebook_with_magics_and_invalid_cells():
    import json

    nb = {
        "cells": [
            {
                "cell_type": "code",
                "source": [
                    "%time import tensorflow as tf\n",
                    "!pip install foo\n",
                    "x = tf.constant(1)\n",
                    "import tensorflow as tf\n",
                    "model = tf.keras.Sequential([tf.keras.layers.BatchNormalization()])\n",
                ],
            },
            {"cell_type": "code", "source": "%%bash\necho hi\n"},
            {"cell_type": "markdown", "source": "# title"},
            {"cell_type": "code", "source": 42},
            "not a cell",
            {"cell_type": "code", "source": ["grads = tape.gradient(loss, model.variables)\n"]},
        ]
    }
    result = _check(json.dumps(nb).encode(), "nb.ipynb")
    assert [(f.code, f.cell, f.line) for f in result.findings] == [("TFG101", 5, 1)]
