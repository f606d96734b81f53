"""The language server's incremental parse (tflint_grad/incremental.py) gives the tree and the
findings of a full parse, on real files under a sequence of random edits."""

from __future__ import annotations

import random
from pathlib import Path

import libcst as cst
import pytest

from tflint_grad import api
from tflint_grad.analysis.positions import Positions, _FastPositions
from tflint_grad.engine import lint_file
from tflint_grad.incremental import ParseCache
from tflint_grad.sourcefile import SourceFile

ROOT = Path(__file__).resolve().parent.parent
CORPORA = Path.home() / ".cache" / "tflint-corpora"


def _files() -> list[Path]:
    files = sorted((ROOT / "examples").rglob("*.py"))
    corpus = sorted(CORPORA.rglob("*.py")) if CORPORA.is_dir() else []
    random.Random(12).shuffle(corpus)
    return files + corpus[:25]


EDITS = (
    lambda lines, i, r: lines.insert(i, "x = 1"),
    lambda lines, i, r: lines.insert(i, "# a comment"),
    lambda lines, i, r: lines.insert(i, ""),
    lambda lines, i, r: lines.insert(i, lines[r.randrange(len(lines))]),  # a copy of some line
    lambda lines, i, r: lines.pop(i),
    lambda lines, i, r: lines.__setitem__(i, lines[i].replace("model", "net")),
    lambda lines, i, r: lines.__setitem__(i, lines[i] + "  # noqa"),
    lambda lines, i, r: lines.insert(i, "def f():\n\tpass\n"),  # a tab indent (mixed indents: full parse)
)


def _edit(text: str, r: random.Random) -> str:
    lines = text.split("\n")
    for _ in range(r.randint(1, 3)):
        if len(lines) < 2:
            break
        r.choice(EDITS)(lines, r.randrange(len(lines) - 1), r)
    return "\n".join(lines)


def _assert_same_positions(mine: cst.Module, full: cst.Module, known) -> None:
    """Every node of the incremental tree's statements has the position of its twin in the
    full parse: from the positions kept across lints (the server's way) and from the lazy
    per-statement ones with ``ast`` first lines (the command line's way)."""
    assert known is not None
    theirs = _FastPositions().compute(full)
    tops: dict[cst.CSTNode, cst.CSTNode] = {}
    kept = Positions(mine, mine.code, lambda node: None, known)
    one_by_one = Positions(mine, mine.code, tops.get, known)  # a node at a time, as a finding asks
    lazy = Positions(full, full.code, lambda node: None)
    for a_stmt, b_stmt in zip(mine.body, full.body, strict=True):
        ours, cli = kept.statement(a_stmt), lazy.statement(b_stmt)
        stack = [(a_stmt, b_stmt)]
        while stack:
            a, b = stack.pop()
            tops[a] = a_stmt
            assert ours.get(a) == theirs.get(b) == cli.get(b) == one_by_one[a], (type(a).__name__, a, b)
            stack.extend(zip(a.children, b.children))
    assert not one_by_one._whole
    assert not lazy._whole  # no statement needed the whole module's positions


def _full(text: str):
    try:
        return cst.parse_module(text)
    except Exception as e:
        return type(e)


@pytest.mark.parametrize("path", _files(), ids=lambda p: str(p.relative_to(p.parents[1])))
def test_incremental_parse_and_lint_equal_the_full_ones_under_edits(path: Path):
    text = path.read_text(encoding="utf-8", errors="replace")
    r = random.Random(str(path.name))
    cache = ParseCache()
    name = str(path)
    for step in range(6):
        try:
            mine = cache.parse(name, text)
        except Exception as e:
            mine = type(e)
        full = _full(text)
        if isinstance(full, cst.Module):
            assert isinstance(mine, cst.Module) and mine.deep_equals(full), f"edit {step}"
            assert mine.code == text
            _assert_same_positions(mine, full, cache.statement_positions(name))
        else:
            assert mine is full
        if step % 2 == 0 or step == 5:  # linting costs more than parsing: every other step
            findings, errors = api.lint_text(name, text)
            result = lint_file(SourceFile(name, text))
            assert findings == result.findings and [e.message for e in errors] == [e.message for e in result.errors], (
                f"edit {step}"
            )
        text = _edit(text, r)


def test_an_edit_reparses_only_the_changed_statements():
    text = "import tensorflow as tf\n\n" + "".join(f"# step {i}\nx{i} = tf.constant({i})\n\n" for i in range(50))
    cache = ParseCache()
    cache.parse("a.py", text)
    assert cache.reused == 0
    edited = text.replace("x7 = tf.constant(7)", "x7 = tf.constant(70)")
    module = cache.parse("a.py", edited)
    assert cache.reused == 50  # every statement but the edited one
    assert module.deep_equals(cst.parse_module(edited)) and module.code == edited
    _assert_same_positions(module, cst.parse_module(edited), cache.statement_positions("a.py"))


BLOCKS = "#!/usr/bin/env python\n# a header\nimport tensorflow as tf\n\n" + "".join(
    f"# step {i}\ndef f{i}(x):\n    return tf.nn.relu(x)\n\n" for i in range(20)
)
# edits at the seams between unchanged chunks: what is typed there may belong to the chunk
# before (an indented comment closes a block) or after (blank lines and comments lead it)
SEAM_EDITS = {
    "a comment before a statement": lambda t: t.replace("# step 7\n", "# step 7\n# more\n"),
    "a blank line before a comment": lambda t: t.replace("\n# step 7\n", "\n\n# step 7\n"),
    "an indented comment after a block": lambda t: t.replace("\n\n# step 7\n", "\n    # end of f6\n\n# step 7\n"),
    "a statement typed at the end of a block": lambda t: t.replace("\n\n# step 7\n", "\n    y = 1\n\n# step 7\n"),
    "a copy of a statement": lambda t: t.replace("# step 7\n", "def f3(x):\n    return tf.nn.relu(x)\n# step 7\n"),
    "everything before a statement deleted": lambda t: t[t.index("# step 7\n") :],
    "the last statement without its newline": lambda t: t.rstrip("\n"),
    "a new first statement": lambda t: "import numpy as np\n" + t,
    "two statements joined": lambda t: t.replace("\n\n# step 7\n", "\n# step 7\n"),
}


@pytest.mark.parametrize("edit", SEAM_EDITS.values(), ids=SEAM_EDITS.keys())
def test_edits_at_the_seams_between_chunks_give_the_full_parse(edit):
    cache = ParseCache()
    cache.parse("a.py", BLOCKS)
    edited = edit(BLOCKS)
    module = cache.parse("a.py", edited)
    full = cst.parse_module(edited)
    assert module.deep_equals(full) and module.code == edited
    seen: set[int] = set()  # a node appears once in a tree (the positions are keyed by node)
    stack: list[cst.CSTNode] = [module]
    while stack:
        node = stack.pop()
        assert id(node) not in seen, type(node).__name__
        seen.add(id(node))
        stack.extend(node.children)
    _assert_same_positions(module, full, cache.statement_positions("a.py"))
    assert cache.reused >= len(module.body) - 3  # only the chunks near the edit were parsed again


@pytest.mark.parametrize(
    "text",
    [
        "\ufeffimport tensorflow as tf\nx = 1\n",
        "# -*- coding: latin-1 -*-\nimport tensorflow as tf\nx = 1\n",
        "import tensorflow as tf\r\nx = 1\r\n",
        "from __future__ import print_function\nimport tensorflow as tf\nx = 1\n",
        "import tensorflow as tf\nx = (\n",
        "x = 1\ny = 2",
        'x = """\n#"""\ny = 1\n',
        "x = 1; y = 2\nif x: pass\nelse:\n    pass\n",
    ],
)
def test_texts_the_chunks_cannot_rebuild_are_parsed_whole(text: str):
    cache = ParseCache()
    for _ in range(2):
        full = _full(text)
        try:
            mine = cache.parse("a.py", text)
        except Exception as e:
            mine = type(e)
        if isinstance(full, cst.Module):
            assert mine.deep_equals(full) and mine.code == full.code
        else:
            assert mine is full
