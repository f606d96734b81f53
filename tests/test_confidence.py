"""Confidence: findings whose premise the code does not show are hidden unless asked for.

TFG201 on a model passed in as a parameter (its layers cannot be seen) is the low-confidence
finding used here; TFG101 on ``model.variables`` of a model with a visible BatchNormalization
is the high one.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tflint_grad import cli
from tflint_grad.config import ConfigError, parse
from tflint_grad.engine import lint_source
from tflint_grad.settings import Settings

ASSUMED = textwrap.dedent("""\
    import tensorflow as tf
    def train_step(model, opt, x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x) - y))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
""")


@pytest.fixture
def tfg(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)

    def call(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        cap = capsys.readouterr()
        return code, cap.out, cap.err

    return call


def _write(base: Path, name: str, text: str) -> None:
    (base / name).write_text(text)


def test_low_finding_is_a_candidate_by_default():
    settings = Settings.default()
    assert lint_source(ASSUMED, "t.py", settings) == []
    settings.min_confidence = "low"
    (f,) = lint_source(ASSUMED, "t.py", settings)
    assert (f.code, f.confidence) == ("TFG201", "low")
    assert "assumed" in f.message


def test_cli_min_confidence_flag(tfg, tmp_path):
    _write(tmp_path, "train.py", ASSUMED)
    code, out, _ = tfg("check", "--format", "json", "train.py")
    assert code == 0 and json.loads(out)["findings"] == []
    code, out, _ = tfg("check", "--format", "text", "train.py")
    assert code == 0 and "TFG201" not in out
    code, out, _ = tfg("check", "--min-confidence", "low", "--format", "json", "train.py")
    (f,) = json.loads(out)["findings"]
    assert code == 1 and f["confidence"] == "low"


def test_config_min_confidence_and_show(tfg, tmp_path):
    _write(tmp_path, "train.py", ASSUMED)
    _write(tmp_path, "pyproject.toml", '[tool.tflint-grad]\nmin-confidence = "low"\n')
    code, out, _ = tfg("check", "--format", "sarif", "train.py")
    (res,) = json.loads(out)["runs"][0]["results"]
    assert code == 1 and res["properties"]["confidence"] == "low" and res["rank"] == 30.0
    # the command line wins over the config
    code, out, _ = tfg("check", "--min-confidence", "high", "train.py")
    assert code == 0
    code, out, _ = tfg("config", "--show", "train.py")
    assert "min-confidence:    low" in out
    code, out, _ = tfg("config", "--format", "json", "train.py")
    assert json.loads(out)["min-confidence"] == "low"


def test_config_min_confidence_is_validated(tmp_path):
    with pytest.raises(ConfigError) as e:
        parse({"min-confidence": "medium"}, tmp_path / "pyproject.toml")
    assert "'tool.tflint-grad.min-confidence' in" in str(e.value) and "must be one of high, low" in str(e.value)


def test_flake8_plugin_follows_the_default(tmp_path):
    from tflint_grad.flake8_plugin import Checker

    path = tmp_path / "train.py"
    path.write_text(ASSUMED)
    lines = ASSUMED.splitlines(keepends=True)
    assert list(Checker(None, lines, str(path)).run()) == []


# A model whose layers the static pass cannot see (picked from a list): TFG201 is a low candidate,
# hidden by default. --confirm traces it and reports it because the trace shows the
# BatchNormalization running with training falsy.
TRACED = textwrap.dedent("""\
    import numpy as np
    import tensorflow as tf
    models = [tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(4), tf.keras.layers.BatchNormalization()])]
    model = models[0]
    opt = tf.keras.optimizers.SGD(0.1)
    x, y = np.ones((8, 4), np.float32), np.zeros((8, 4), np.float32)
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x) - y))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
""")


@pytest.mark.tf
@pytest.mark.slow
@pytest.mark.skipif(
    __import__("importlib").util.find_spec("tensorflow") is None and not __import__("os").environ.get("CI"),
    reason="needs the trace extra",
)
def test_confirm_reports_a_low_candidate_only_when_the_trace_confirms_it(tfg, tmp_path):
    _write(tmp_path, "train.py", TRACED)
    code, out, _ = tfg("check", "--format", "json", "train.py")
    assert code == 0 and json.loads(out)["findings"] == []
    code, out, err = tfg("check", "--confirm", "--no-cache", "--format", "json", "train.py")
    (f,) = [f for f in json.loads(out)["findings"] if f["code"] == "TFG201"]
    assert (f["line"], f["confidence"], f["verdict"]) == (9, "low", "confirmed"), (f, err)
    assert "BatchNormalization" in f["evidence"]
    # the same step with a Dense layer instead: the trace refutes the candidate, nothing is reported
    _write(tmp_path, "train.py", TRACED.replace("tf.keras.layers.BatchNormalization()", "tf.keras.layers.Dense(4)"))
    code, out, err = tfg("check", "--confirm", "--no-cache", "--format", "json", "train.py")
    assert code == 0 and [f for f in json.loads(out)["findings"] if f["code"] == "TFG201"] == [], err
