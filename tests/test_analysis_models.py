"""The program model's models: layers seen through call sites and sibling modules."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tflint_grad import cli

BACKBONE = textwrap.dedent("""\
    import tensorflow as tf
    class Backbone(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.conv = tf.keras.layers.Conv2D(8, 3)
            self.bn = tf.keras.layers.BatchNormalization()
        def call(self, x, training=None):
            return self.bn(self.conv(x), training=training)
""")

ENCODER = textwrap.dedent("""\
    import tensorflow as tf
    class Encoder(tf.keras.Model):
        def __init__(self, vocab, units):
            super().__init__()
            self.embedding = tf.keras.layers.Embedding(vocab, units)
            self.gru = tf.keras.layers.GRU(units)
        def call(self, x):
            return self.gru(self.embedding(x))
""")

TRAIN = textwrap.dedent("""\
    import tensorflow as tf
    from nets.backbone import Backbone
    import encoder as enc
    class Trainer:
        def __init__(self, model, encoder):
            self.model = model
            self.encoder = encoder
        def step(self, x, y):
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(self.model(x, training=True)) + tf.reduce_mean(self.encoder(x))
            return tape.gradient(loss, self.model.variables)
    trainer = Trainer(Backbone(), enc.Encoder(100, 8))
""")


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "backbone.py").write_text(BACKBONE)
    (tmp_path / "encoder.py").write_text(ENCODER)
    (tmp_path / "train.py").write_text(TRAIN)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _findings(capsys, *args: str) -> list[dict]:
    cli.main(["check", "--isolated", "--no-cache", "--format", "json", *args])
    return json.loads(capsys.readouterr().out)["findings"]


def test_layers_of_a_model_imported_from_a_sibling_module(project: Path, capsys):
    # Backbone (nets/backbone.py) holds a BatchNormalization: `.variables` includes its moving
    # statistics (high); the Encoder (encoder.py) is Embedding + GRU: no TFG201 on its call
    found = _findings(capsys, "--select", "TFG101,TFG201", "train.py")
    assert [(f["code"], f["line"], f["confidence"]) for f in found] == [("TFG101", 11, "high")]
    assert "class `Backbone`" in found[0]["message"] and "backbone.py" in found[0]["message"]


def test_an_unreadable_import_is_assumed_low(project: Path, capsys):
    (project / "nets" / "backbone.py").unlink()
    assert _findings(capsys, "--select", "TFG101", "train.py") == []
    (low,) = _findings(capsys, "--select", "TFG101", "--min-confidence", "low", "train.py")
    assert low["confidence"] == "low" and "assumed" in low["message"]


def test_the_cache_notices_a_changed_sibling(project: Path, capsys):
    def run() -> list[tuple[str, int]]:
        cli.main(["check", "--isolated", "--format", "json", "--select", "TFG101", "train.py"])
        return [(f["code"], f["line"]) for f in json.loads(capsys.readouterr().out)["findings"]]

    assert run() == [("TFG101", 11)]
    assert run() == [("TFG101", 11)]  # from the cache
    backbone = project / "nets" / "backbone.py"
    backbone.write_text(BACKBONE.replace("tf.keras.layers.BatchNormalization()", "tf.keras.layers.Dense(8)"))
    assert run() == []  # the Backbone no longer holds non-trainable variables


def test_sequential_layers_are_listed_once_for_models_and_producers():
    import libcst as cst

    from tflint_grad.analysis.context import FileContext
    from tflint_grad.analysis.models import sequential_layers
    from tflint_grad.rule import dedent

    src = dedent("""
        import tensorflow as tf
        hidden = tf.keras.layers.Dense(8)
        model = tf.keras.Sequential([hidden, tf.keras.layers.Dropout(0.5)])
        model.add(tf.keras.layers.Dense(1))
        model = tf.keras.Sequential(layer_list)
        model.add(tf.keras.layers.BatchNormalization())
    """)
    ctx = FileContext(cst.parse_module(src), src, "example.py")
    first, second = [n for n in ctx.nodes if type(n) is cst.Call and ctx.code(n.func) == "tf.keras.Sequential"]

    def names(listing) -> list[str]:
        return [ctx.code(v.func) if isinstance(v, cst.Call) else "?" for v in listing.layers]

    mine = sequential_layers(ctx, first, this_binding=True)
    assert mine.literal and names(mine) == ["tf.keras.layers.Dense", "tf.keras.layers.Dropout", "tf.keras.layers.Dense"]
    every = sequential_layers(ctx, first)  # every `.add` on the name `model`
    assert names(every)[-1] == "tf.keras.layers.BatchNormalization"
    assert not sequential_layers(ctx, second).literal  # `Sequential(layer_list)`: the list is not shown
