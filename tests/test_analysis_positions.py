"""Node positions (tflint_grad/analysis/positions.py): computed per top-level statement, on
first use, they equal libcst's PositionProvider on the texts where the two ways of finding a
statement's first line could disagree; and a parse without node validation gives the same tree."""

from __future__ import annotations

import libcst as cst
import pytest
from libcst.metadata import MetadataWrapper, PositionProvider

from tflint_grad import parsing
from tflint_grad.analysis import FileContext

TEXTS = {
    "header comments and blank lines": "#!/usr/bin/env python\n# a header\n\nimport tensorflow as tf\n\n\nx = tf.constant(1.0)\n",
    "no final newline": "import tensorflow as tf\ny = tf.math.log(tf.nn.softmax(x))",
    "semicolons": "import tensorflow as tf\na = 1; b = tf.nn.softmax(a); c = tf.math.log(b)\nd = 2\n",
    "decorators with comments between": (
        "import tensorflow as tf\n\n# above the decorator\n@tf.function\n# between\n@other(\n    1,\n)\n"
        "def step(x):\n    return tf.math.log(tf.nn.softmax(x))\n"
    ),
    "class with a footer comment in its block": (
        "import tensorflow as tf\nclass M(tf.keras.Model):\n    def call(self, x):\n        return x\n"
        "    # indented comment after the block\n\n# column-0 comment\nz = M()\n"
    ),
    "multi-line strings at column 0": 'import tensorflow as tf\ns = """\nx = 1\n"""\ny = tf.nn.relu(s)\n',
    "continuation lines": "import tensorflow as tf\nx = tf.nn.softmax(\n1,\n)\ny = 1 + \\\n  2\n",
    "async and compound statements": (
        "import tensorflow as tf\nasync def f():\n    async with a as b:\n        pass\n"
        "if x:\n    pass\nelif y:\n    pass\nelse:\n    z = tf.math.log(x)\n"
    ),
    "form feed and tabs": "import tensorflow as tf\n\x0c\nx = 1\nif x:\n\ty = tf.nn.relu(x)\n",
    "carriage returns": "import tensorflow as tf\r\nx = 1\r\nif x:\r\n    y = tf.nn.relu(x)\r\n",
}


def _libcst_positions(module: cst.Module) -> dict[cst.CSTNode, tuple]:
    resolved = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    return {n: ((r.start.line, r.start.column), (r.end.line, r.end.column)) for n, r in resolved.items()}


@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_lazy_positions_equal_libcst_positions(text: str):
    module = parsing.parse_module(text)
    ctx = FileContext(module, text, "t.py")
    expected = _libcst_positions(module)
    for node in ctx.nodes:
        if node is module:
            continue
        (line, col), (end_line, end_col) = expected[node]
        assert ctx.range(node) == (line, col + 1, end_line, end_col + 1), (type(node).__name__, ctx.code(node))
    assert ctx._positions is not None and not ctx._positions._whole  # one statement at a time


def test_only_the_statements_asked_about_are_generated():
    text = "import tensorflow as tf\n" + "".join(f"x{i} = tf.constant({i})\n" for i in range(100))
    module = parsing.parse_module(text)
    ctx = FileContext(module, text, "t.py")
    last = module.body[-1]
    assert ctx.range(last) == (101, 1, 101, 22)  # "x99 = tf.constant(99)"
    assert ctx._positions is not None and ctx._positions._generated == {last}


def test_a_text_ast_cannot_read_falls_back_to_the_whole_module():
    # `type X = ...` (Python 3.12) parses with libcst but not with the ast of Python 3.11
    text = "import tensorflow as tf\ntype X = int\ny = tf.nn.relu(1)\n"
    try:
        compile(text, "t.py", "exec")
    except SyntaxError:
        pass
    else:
        pytest.skip("this Python's ast reads the text: nothing to fall back from")
    module = parsing.parse_module(text)
    ctx = FileContext(module, text, "t.py")
    call = next(n for n in ctx.nodes if isinstance(n, cst.Call))
    assert ctx.range(call)[:2] == (3, 5)
    assert ctx._positions is not None and ctx._positions._whole


def test_parse_without_validation_gives_the_same_tree_and_validation_comes_back():
    text = TEXTS["decorators with comments between"] + TEXTS["async and compound statements"]
    assert parsing.parse_module(text).deep_equals(cst.parse_module(text))
    with pytest.raises(cst.ParserSyntaxError):
        parsing.parse_module("x = (\n")
    # nodes built outside a parse are validated again, also after a parse that raised
    with pytest.raises(cst.CSTValidationError):
        cst.Name("not a name")
