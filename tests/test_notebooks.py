"""Notebooks as Jupyter runs them: IPython syntax, one bad cell, cell-local positions, --fix."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import requires_tf

from tflint_grad import cells, cli, output
from tflint_grad.engine import lint_bytes

HAVE_IPYTHON = importlib.util.find_spec("IPython") is not None

FLAGGED = "grads = tape.gradient(loss, model.variables)"
# The set-up cell shows the model's BatchNormalization: `.variables` then visibly holds its
# non-trainable statistics (TFG101 reports only what the code shows).
SETUP = "import tensorflow as tf\nmodel = tf.keras.Sequential([tf.keras.layers.BatchNormalization()])\n"
TRAIN = "with tf.GradientTape() as tape:\n    loss = model(x, training=True)\n" + FLAGGED + "\n"

# Cells that Jupyter runs; each is followed (in the same cell) by the flagged training step,
# so the finding proves the cell was analysed, at the right cell-local line.
RUNNABLE = {
    "colab set-up: a magic as the only statement of try/except bodies": (
        "try:\n  %tensorflow_version 2.x\nexcept Exception:\n  pass\n"
    ),
    "magics in if/else bodies": "if IN_COLAB:\n    !pip install foo\nelse:\n    %cd data\n",
    "shell command continued with backslashes": "!wget https://x.org/a.zip \\\n    -O a.zip \\\n    -q\n",
    "% operator starting a continuation line inside brackets": "print('%d steps'\n      % steps)\nz = (a\n%b)\n",
    "help": "tf.keras.layers.Dense?\n??tf.function\nmodel.fit??\n",
    "captured shell and magic output": "files = !ls data\nenv = %env\n",
    "magic inside a string is not a magic": "s = '''\n%notmagic\n!notshell\n'''\n",
}


def nb_json(*cells_: tuple[str, str], indent: int = 1) -> str:
    """A notebook as Jupyter writes it (outputs, ids, metadata, nbformat's layout)."""
    doc = {
        "cells": [
            {
                "cell_type": kind,
                **({"execution_count": i, "outputs": []} if kind == "code" else {}),
                "id": f"cell-{i}",
                "metadata": {},
                "source": src.splitlines(keepends=True),
            }
            for i, (kind, src) in enumerate(cells_)
        ],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    return json.dumps(doc, indent=indent, ensure_ascii=False) + "\n"


@pytest.fixture(params=["ipython", "fallback"])
def backend(request, monkeypatch) -> str:
    if request.param == "ipython":
        if not HAVE_IPYTHON:
            pytest.skip("IPython is not installed")
        monkeypatch.delenv(cells.ENV_SWITCH, raising=False)
        assert cells.backend().startswith("ipython")
    else:
        monkeypatch.setenv(cells.ENV_SWITCH, "0")
        assert cells.backend() == "fallback"
    return request.param


def lint(text: str):
    return lint_bytes(text.encode(), "nb.ipynb").findings


@pytest.mark.parametrize("case", sorted(RUNNABLE))
def test_runnable_cells_are_analysed(backend, case):
    head = RUNNABLE[case]
    text = nb_json(("markdown", "# T"), ("code", SETUP), ("code", head + TRAIN))
    found = [(f.code, f.cell, f.line, f.column) for f in lint(text)]
    line = head.count("\n") + 3
    assert found == [("TFG101", 2, line, len("grads = tape.gradient(loss, ") + 1)]


@pytest.mark.parametrize(
    "cell",
    [
        "    import tensorflow as tf\n    x = 1\n    if x:\n        y = 2\n",  # indented as a whole
        " import tensorflow as tf\n x = (1,\n      2)\nprint(x)\n",  # only the first line's indent (IPython 8's reading)
        "%%time\nimport tensorflow as tf\n!ls\n",  # %%time runs its body as Python
        "%%capture out\n%pip install foo\nimport tensorflow as tf\n",
        "%%writefile train.py\nimport tensorflow as tf\nprint tf.__version__\n",  # not Python: not parsed
        "%%bash\nfor f in *; do echo $f; done\n",
        "%%html\n<b>tf</b>\n",
        "ls ./data",  # automagic: IPython runs a one-line cell starting with a magic's name as that magic
        "pip install tensorflow==2.15",
        "\n\n%matplotlib inline\nimport tensorflow as tf",
        ">>> import tensorflow as tf\n>>> x = tf.ones(3)\n",
    ],
)
def test_ipython_syntax_parses(backend, cell):
    text = nb_json(("code", SETUP), ("code", cell))
    assert [f.code for f in lint(text)] == []


def test_fallback_makes_the_same_python_as_ipython(monkeypatch):
    if not HAVE_IPYTHON:
        pytest.skip("IPython is not installed")
    sources = [*RUNNABLE.values(), "    a = 1\n    b = 2\n", "%%time\n!ls\nx = 1\n", "ls ./data", "x = 1 % 2\n"]
    sources += [" a = (1,\n      2)\nprint(a)\n"]
    sources += ["!pip install a \\\n  b\nif x:\n    !echo hi\n", "obj?\n", "%%writefile a.py\nx\n"]
    monkeypatch.delenv(cells.ENV_SWITCH, raising=False)
    with_ipython = [cells.to_python(s) for s in sources]
    monkeypatch.setenv(cells.ENV_SWITCH, "0")
    assert [cells.to_python(s) for s in sources] == with_ipython
    for source, code in zip(sources, with_ipython):
        assert code.text.count("\n") == source.count("\n")  # line N of the Python is line N of the cell


def test_a_bad_cell_gets_its_own_tfg000_and_the_others_are_analysed(backend):
    text = nb_json(
        ("code", SETUP),
        ("code", "x = 1\nprint 'loss', x\n"),  # Python 2
        ("markdown", "Fill in:"),
        ("code", "batch_size = \n"),  # an exercise blank
        ("code", TRAIN),
    )
    found = [(f.code, f.cell, f.line) for f in lint(text)]
    assert found == [("TFG000", 1, 2), ("TFG000", 3, 1), ("TFG101", 4, 3)]
    messages = [f.message for f in lint(text)]
    assert "Python 2 `print` statement at line 2" in messages[0]


def test_cell_order_is_execution_order_and_references_name_the_cell(backend):
    text = nb_json(
        ("code", "import tensorflow as tf\nmodel = tf.keras.Sequential([tf.keras.layers.Dense(1)])\n"),
        ("code", "x = tf.ones((2, 2))\nwith tf.GradientTape() as tape:\n    y = model(x)\n"),
        ("code", "%time\nloss = tf.reduce_mean(y)\ngrads = tape.gradient(loss, model.trainable_variables)\n"),
    )
    (f,) = lint(text)
    assert (f.code, f.cell, f.line) == ("TFG103", 2, 2)
    assert "(line 3)" in f.message and "(cell 2, line 2)" in f.message  # same cell: line only


def test_positions_json_sarif_are_cell_local(tfg_dir):
    tmp_path = tfg_dir
    (tmp_path / "nb.ipynb").write_text(nb_json(("code", SETUP), ("code", "    " + FLAGGED)))
    findings = lint_bytes((tmp_path / "nb.ipynb").read_bytes(), "nb.ipynb").findings
    (f,) = findings
    col = len("    grads = tape.gradient(loss, ") + 1  # the cell is indented as a whole: columns in the cell
    assert (f.cell, f.line, f.column, f.end_column) == (1, 1, col, col + len("model.variables"))
    (edit,) = f.fix.edits
    assert edit.to_dict() == {
        "line": 1,
        "column": col,
        "end_line": 1,
        "end_column": col + len("model.variables"),
        "content": "model.trainable_variables",
        "cell": 1,
    }
    assert output.format_text(findings).startswith(f"nb.ipynb:cell 2:1:{col}: TFG101 [*]")
    result = output.to_sarif(findings, root=str(tmp_path))["runs"][0]["results"][0]
    region = result["locations"][0]["physicalLocation"]["region"]
    assert region["startLine"] == 1 and region["startColumn"] == col and region["properties"] == {"cell": 1}


@pytest.fixture
def tfg_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _outputs_notebook() -> str:
    """nbformat's layout, with outputs, ids, execution counts, non-ASCII text and a base64 image."""
    doc = json.loads(
        nb_json(
            ("markdown", "# Entraînement ü\n"),
            ("code", "try:\n  %tensorflow_version 2.x\nexcept Exception:\n  pass\n" + SETUP.rstrip("\n")),
            ("code", "!pip install foo \\\n   bar\n" + TRAIN + "print('done ✓')"),
            ("code", "    g = tape.gradient(loss, model.variables)\n    h = 1"),
        )
    )
    doc["cells"][1]["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["TensorFlow 2.x selected.\n"]}]
    doc["cells"][2]["outputs"] = [
        {
            "data": {
                "image/png": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==\n",
                "text/plain": ["<Figure size 640x480 with 1 Axes>"],
            },
            "metadata": {"needs_background": "light"},
            "output_type": "display_data",
        }
    ]
    doc["cells"][3]["metadata"] = {"tags": ["train"], "collapsed": False}
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("style", ["nbformat", "string-sources-indent-2"])
def test_fix_round_trip_is_byte_stable_outside_the_edited_cells(tfg_dir, capsys, style):
    text = _outputs_notebook()
    if style != "nbformat":
        doc = json.loads(text)
        for cell in doc["cells"]:
            cell["source"] = "".join(cell["source"])
        text = json.dumps(doc, indent=2, ensure_ascii=True)  # no final newline, \u escapes
    path = tfg_dir / "nb.ipynb"
    path.write_bytes(text.encode())
    expected = text.replace("model.variables)", "model.trainable_variables)").encode()

    assert cli.main(["check", "--no-cache", "--diff", "nb.ipynb"]) == 1
    diff = capsys.readouterr().out
    assert path.read_bytes() == text.encode()  # --diff writes nothing
    assert "--- a/nb.ipynb:cell 3\n+++ b/nb.ipynb:cell 3\n" in diff and "--- a/nb.ipynb:cell 4\n" in diff
    assert (
        "-grads = tape.gradient(loss, model.variables)\n+grads = tape.gradient(loss, model.trainable_variables)\n"
        in diff
    )

    assert cli.main(["check", "--no-cache", "--fix", "nb.ipynb"]) == 0
    assert path.read_bytes() == expected
    assert cli.main(["check", "--no-cache", "--fix", "nb.ipynb"]) == 0  # idempotent
    assert path.read_bytes() == expected


def test_fix_notebook_from_stdin_prints_the_notebook(tfg_dir, capsys, monkeypatch):
    import io
    import sys

    text = nb_json(("code", SETUP), ("code", TRAIN))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode())))
    cli.main(["check", "--no-cache", "--fix", "--stdin-filename", "nb.ipynb", "-"])
    out = capsys.readouterr().out
    assert out == text.replace("model.variables)", "model.trainable_variables)")


@pytest.mark.tf
@pytest.mark.slow
@requires_tf
def test_confirm_runs_the_cells_in_order_and_names_the_cell_that_stopped(tfg_dir, capsys):
    setup = "%matplotlib inline\n!pip install nothing-at-all\nfiles = !ls\nimport tensorflow as tf\n"
    model = (
        "model = tf.keras.Sequential([tf.keras.layers.Dense(2, input_shape=(3,)), tf.keras.layers.BatchNormalization()])\n"
        "x = tf.ones((4, 3))\n"
    )
    step = "with tf.GradientTape() as tape:\n    loss = tf.reduce_sum(model(x, training=True))\n" + FLAGGED + "\n"
    (tfg_dir / "ok.ipynb").write_text(nb_json(("code", setup), ("code", model), ("code", step)))
    (tfg_dir / "stop.ipynb").write_text(
        nb_json(("code", setup), ("code", model), ("code", "files[0]\n"), ("code", step))
    )
    assert cli.main(["check", "--no-cache", "--confirm", "--format", "json", "ok.ipynb", "stop.ipynb"]) == 1
    cap = capsys.readouterr()
    found = {f["path"]: f for f in json.loads(cap.out)["findings"]}
    ok, stop = found["ok.ipynb"], found["stop.ipynb"]
    # magics were no-ops, `!` commands not run; the flagged line of cell 3 ran and was confirmed
    assert ok["verdict"] == "confirmed" and "cell 3, line 3" in ok["evidence"]
    # `files = !ls` is an empty list: cell 3 raised, so the flagged line never ran
    assert stop["verdict"] == "inconclusive" and "stopped at cell 3, line 1: IndexError" in stop["evidence"]
    assert "stop.ipynb: the notebook stopped at cell 3, line 1: IndexError" in cap.err
