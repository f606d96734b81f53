"""Generates the benchmark corpus: a few hundred varied, realistic TensorFlow training scripts.

``generate(folder, count, seed)`` writes ``count`` scripts built from templates with
randomized details (names, sizes, layer stacks, optimizers, import styles, TF1 graph code,
TF2 eager/tf.function loops, Keras fit, subclassed models, GANs, RNNs, transfer learning,
metric learning, helper modules without TensorFlow...). Some carry the bugs tflint-grad
looks for (a missing ``training=True``, UPDATE_OPS never run, tiny initializers, log of a
softmax, sqrt of a squared distance...), most do not. The output is deterministic for a
given seed, so every tool and every run sees the same bytes.
"""

from __future__ import annotations

import os
import random
import shutil
import textwrap

ACTS = ["relu", "elu", "selu", "tanh", "gelu", "swish"]
OPTS2 = [
    ("Adam", "1e-3"),
    ("SGD", "0.01"),
    ("RMSprop", "1e-3"),
    ("Adagrad", "0.05"),
    ("Nadam", "2e-3"),
    ("AdamW", "5e-4"),
]
OPTS1 = [
    "AdamOptimizer(learning_rate)",
    "GradientDescentOptimizer(learning_rate)",
    "MomentumOptimizer(learning_rate, 0.9)",
    "RMSPropOptimizer(learning_rate)",
    "AdagradOptimizer(learning_rate)",
]
MODEL_NAMES = ["model", "net", "classifier", "encoder", "mlp", "cnn", "backbone", "student", "policy_net", "regressor"]
DATASETS = ["mnist", "fashion_mnist", "cifar10", "cifar100"]


def _d(code: str) -> str:
    return textwrap.dedent(code).lstrip("\n")


class Gen:
    def __init__(self, rng: random.Random, index: int) -> None:
        self.r = rng
        self.i = index

    # -- small pieces -------------------------------------------------------------------
    def pick(self, seq):
        return self.r.choice(seq)

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def units(self) -> int:
        return self.pick([16, 32, 64, 128, 256, 512])

    def header(self, title: str) -> str:
        lines = [
            f'"""{title}',
            "",
            self.pick(
                [
                    "Trains on synthetic data so that it runs anywhere; swap in the real loader for experiments.",
                    "Adapted from an internal experiment; see the README for the expected accuracy.",
                    "Usage: python {name}.py --epochs 10 --batch-size 64",
                    "Quick baseline, no hyper-parameter search yet.",
                ]
            ).format(name=f"train_{self.i:03d}"),
            '"""',
        ]
        return "\n".join(lines) + "\n"

    def argparse_block(self, extra: list[tuple[str, str, str]] | None = None) -> str:
        args = [
            ("--epochs", "int", str(self.pick([1, 2, 5, 10, 20]))),
            ("--batch-size", "int", str(self.pick([16, 32, 64, 128]))),
            ("--learning-rate", "float", self.pick(["1e-3", "3e-4", "0.01", "0.1"])),
            ("--seed", "int", str(self.r.randint(0, 9999))),
        ]
        args += extra or []
        if self.chance(0.5):
            args.append(("--log-dir", "str", repr(self.pick(["logs", "/tmp/run", "runs/exp1"]))))
        body = "".join(f"    parser.add_argument({a!r}, type={t}, default={d})\n" for a, t, d in args)
        return (
            "def parse_args(argv=None):\n"
            f"    parser = argparse.ArgumentParser(description={('training script ' + str(self.i))!r})\n"
            f"{body}"
            "    return parser.parse_args(argv)\n"
        )

    def numpy_data(self, n_features: int, n_classes: int, samples: int) -> str:
        return _d(f"""
        def make_data(n={samples}, seed=0):
            rng = np.random.RandomState(seed)
            x = rng.randn(n, {n_features}).astype("float32")
            w = rng.randn({n_features}, {n_classes}).astype("float32")
            y = np.argmax(x @ w + 0.1 * rng.randn(n, {n_classes}), axis=1).astype("int64")
            return x, y
        """)

    def helpers(self) -> str:
        """Unrelated helper code of various lengths (real scripts carry plenty)."""
        out = []
        for _ in range(self.r.randint(0, 4)):
            kind = self.r.randint(0, 4)
            name = (
                self.pick(["fmt", "log", "report", "track", "save", "load", "plot", "summ"])
                + f"_{self.r.randint(0, 99)}"
            )
            if kind == 0:
                out.append(
                    _d(f"""
                def {name}(values, precision={self.r.randint(2, 5)}):
                    \"\"\"Formats a dict of metrics for the console.\"\"\"
                    parts = []
                    for key in sorted(values):
                        value = values[key]
                        if isinstance(value, float):
                            parts.append(f"{{key}}={{value:.{{precision}}f}}")
                        else:
                            parts.append(f"{{key}}={{value}}")
                    return ", ".join(parts)
                """)
                )
            elif kind == 1:
                out.append(
                    _d(f"""
                class {name.title().replace("_", "")}:
                    \"\"\"Keeps a running average of a scalar.\"\"\"

                    def __init__(self, momentum={self.pick(["0.9", "0.98", "0.99"])}):
                        self.momentum = momentum
                        self.value = None
                        self.count = 0

                    def update(self, x):
                        x = float(x)
                        self.count += 1
                        if self.value is None:
                            self.value = x
                        else:
                            self.value = self.momentum * self.value + (1 - self.momentum) * x
                        return self.value

                    def __repr__(self):
                        return f"{{type(self).__name__}}(value={{self.value}}, count={{self.count}})"
                """)
                )
            elif kind == 2:
                out.append(
                    _d(f"""
                def {name}(path, history):
                    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
                    with open(path, "w") as fh:
                        json.dump({{k: [float(v) for v in vs] for k, vs in history.items()}}, fh, indent=2)
                    return path
                """)
                )
            elif kind == 3:
                out.append(
                    _d(f"""
                def {name}(schedule, step, warmup={self.r.randint(100, 2000)}, base={self.pick(["1e-3", "3e-4", "0.1"])}):
                    if step < warmup:
                        return base * (step + 1) / warmup
                    if schedule == "cosine":
                        return 0.5 * base * (1 + math.cos(math.pi * min(step / {self.r.randint(10000, 50000)}, 1.0)))
                    if schedule == "step":
                        return base * (0.1 ** (step // {self.r.randint(1000, 9000)}))
                    return base
                """)
                )
            else:
                out.append(
                    _d(f"""
                def {name}(seconds):
                    minutes, seconds = divmod(int(seconds), 60)
                    hours, minutes = divmod(minutes, 60)
                    return "%02d:%02d:%02d" % (hours, minutes, seconds)
                """)
                )
        return "\n\n".join(out)

    def imports(self, style: str) -> str:
        base = ["import argparse", "import json", "import math", "import os", "import time", ""]
        base.append("import numpy as np")
        if style == "tf1":
            base.append(self.pick(["import tensorflow as tf", "import tensorflow.compat.v1 as tf"]))
        elif style == "keras":
            base.append("import tensorflow as tf")
            if self.chance(0.5):
                base.append("from tensorflow import keras")
        else:
            base.append("import tensorflow as tf")
        return "\n".join(base) + "\n"

    def keras_prefix(self) -> str:
        return self.pick(["tf.keras", "tf.keras", "keras"]) if self.chance(0.5) else "tf.keras"

    def dense_stack(
        self, k: str, depth: int, bn: bool, dropout: bool, indent: str = "    ", tiny: bool = False
    ) -> list[str]:
        layers = []
        for _ in range(depth):
            init = ""
            if tiny and self.chance(0.6):
                init = (
                    f", kernel_initializer={k}.initializers.RandomNormal(stddev={self.pick(['1e-4', '0.001', '1e-5'])})"
                )
            elif self.chance(0.2):
                init = ", kernel_initializer=" + self.pick(['"he_normal"', '"glorot_uniform"', '"lecun_normal"'])
            layers.append(f"{indent}{k}.layers.Dense({self.units()}, activation={self.pick(ACTS)!r}{init}),")
            if bn and self.chance(0.7):
                layers.append(f"{indent}{k}.layers.BatchNormalization(),")
            if dropout and self.chance(0.6):
                layers.append(f"{indent}{k}.layers.Dropout({self.pick(['0.1', '0.2', '0.3', '0.5'])}),")
        return layers

    # -- templates ----------------------------------------------------------------------
    def keras_fit(self) -> str:
        k = "keras" if self.chance(0.3) else "tf.keras"
        nf, nc = self.pick([8, 16, 20, 32, 64]), self.pick([2, 3, 5, 10])
        name = self.pick(MODEL_NAMES)
        opt, lr = self.pick(OPTS2)
        functional = self.chance(0.4)
        stack = self.dense_stack(k, self.r.randint(1, 5), self.chance(0.5), self.chance(0.5), tiny=self.chance(0.1))
        if functional:
            body = [f"    inputs = {k}.Input(shape=({nf},))", "    x = inputs"]
            for line in stack:
                body.append(f"    x = {line.strip().rstrip(',')}(x)")
            out_act = "softmax" if self.chance(0.7) else None
            body.append(f"    outputs = {k}.layers.Dense({nc}{', activation=' + repr(out_act) if out_act else ''})(x)")
            body.append(f"    return {k}.Model(inputs, outputs, name={name!r})")
            build = "def build_model():\n" + "\n".join(body) + "\n"
        else:
            out_act = "softmax" if self.chance(0.7) else None
            build = (
                "def build_model():\n"
                f"    return {k}.Sequential([\n"
                f"        {k}.Input(shape=({nf},)),\n" + "\n".join("    " + s for s in stack) + "\n"
                f"        {k}.layers.Dense({nc}{', activation=' + repr(out_act) if out_act else ''}),\n"
                f"    ], name={name!r})\n"
            )
        from_logits = out_act is None
        loss = f"{k}.losses.SparseCategoricalCrossentropy(from_logits={from_logits if self.chance(0.85) else not from_logits})"
        callbacks = []
        if self.chance(0.6):
            callbacks.append(
                f"{k}.callbacks.EarlyStopping(patience={self.r.randint(2, 10)}, restore_best_weights=True)"
            )
        if self.chance(0.4):
            callbacks.append(f"{k}.callbacks.ReduceLROnPlateau(factor=0.5, patience={self.r.randint(2, 5)})")
        if self.chance(0.3):
            callbacks.append(f"{k}.callbacks.TensorBoard(log_dir=args.log_dir if hasattr(args, 'log_dir') else 'logs')")
        cb = "[" + ", ".join(callbacks) + "]"
        imp = self.imports("keras")
        if k == "keras" and "from tensorflow import keras" not in imp:
            imp += "from tensorflow import keras\n"
        return "\n\n".join(
            [
                self.header(f"Keras {'functional' if functional else 'Sequential'} classifier trained with model.fit."),
                imp,
                self.numpy_data(nf, nc, self.pick([1000, 2000, 5000])),
                build,
                self.helpers(),
                self.argparse_block(),
                _d(f"""
            def main(argv=None):
                args = parse_args(argv)
                tf.random.set_seed(args.seed)
                x, y = make_data(seed=args.seed)
                split = int(0.8 * len(x))
                {name} = build_model()
                {name}.compile(optimizer={k}.optimizers.{opt}(learning_rate={lr}),
                              loss={loss},
                              metrics=["accuracy"])
                history = {name}.fit(x[:split], y[:split], validation_data=(x[split:], y[split:]),
                                    epochs=args.epochs, batch_size=args.batch_size, callbacks={cb}, verbose=2)
                loss, acc = {name}.evaluate(x[split:], y[split:], verbose=0)
                print("test loss %.4f accuracy %.4f" % (loss, acc))
                {name}.save(os.path.join(args.log_dir if hasattr(args, "log_dir") else ".", "{name}.keras"))
                return history


            if __name__ == "__main__":
                main()
            """),
            ]
        )

    def tape_loop(self) -> str:
        k = "tf.keras"
        nf, nc = self.pick([8, 16, 32, 64]), self.pick([2, 4, 10])
        name = self.pick(MODEL_NAMES)
        opt, lr = self.pick(OPTS2)
        bn, dropout = self.chance(0.6), self.chance(0.5)
        stack = self.dense_stack(k, self.r.randint(1, 4), bn, dropout, indent="        ", tiny=self.chance(0.1))
        training_kw = "" if self.chance(0.2) else ", training=True"
        if self.chance(0.05):
            training_kw = ", trainning=True"
        use_function = self.chance(0.6)
        wrt = self.pick([f"{name}.trainable_variables"] * 5 + [f"{name}.variables", f"{name}.trainable_weights"])
        clip = ""
        if self.chance(0.3):
            clip = self.pick(
                [
                    "    grads = [tf.clip_by_norm(g, 5.0) for g in grads]\n",
                    "    grads, _ = tf.clip_by_global_norm(grads, 1.0)\n",
                    "    grads = [tf.clip_by_value(g, -1.0, 1.0) if g is not None else g for g in grads]\n",
                ]
            )
        loss_expr = self.pick(
            [
                "loss_fn(y, logits)",
                "tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))",
                f"-tf.reduce_mean(tf.reduce_sum(tf.one_hot(y, {nc}) * tf.math.log(tf.nn.softmax(logits)), axis=-1))",
                f"-tf.reduce_mean(tf.reduce_sum(tf.one_hot(y, {nc}) * tf.math.log(tf.nn.softmax(logits) + 1e-8), axis=-1))",
            ]
        )
        opt_line = f"optimizer = {k}.optimizers.{opt}(learning_rate={lr})"
        step_opt = ""
        if self.chance(0.05):
            step_opt = f"    optimizer = {k}.optimizers.{opt}(learning_rate={lr})\n"
        return "\n\n".join(
            [
                self.header("Custom training loop with tf.GradientTape."),
                self.imports("tf2"),
                self.numpy_data(nf, nc, self.pick([1024, 4096])),
                _d(f"""
            def build_model():
                return {k}.Sequential([
                    {k}.Input(shape=({nf},)),
            """)
                + "\n".join(stack)
                + "\n"
                + f"        {k}.layers.Dense({nc}),\n    ])\n",
                self.helpers(),
                f"{name} = build_model()\n{opt_line}\nloss_fn = {k}.losses.SparseCategoricalCrossentropy(from_logits=True)\n"
                f"train_acc = {k}.metrics.SparseCategoricalAccuracy()\n",
                ("@tf.function\n" if use_function else "")
                + "def train_step(x, y):\n"
                + step_opt
                + "    with tf.GradientTape() as tape:\n"
                f"        logits = {name}(x{training_kw})\n"
                f"        loss = {loss_expr}\n"
                + (f"        loss += tf.add_n({name}.losses) if {name}.losses else 0.0\n" if self.chance(0.3) else "")
                + f"    grads = tape.gradient(loss, {wrt})\n"
                + clip
                + f"    optimizer.apply_gradients(zip(grads, {wrt}))\n"
                "    train_acc.update_state(y, logits)\n"
                "    return loss\n",
                _d(f"""
            {"@tf.function" if use_function else ""}
            def eval_step(x, y):
                logits = {name}(x, training=False)
                return tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1), y), tf.float32))
            """),
                self.argparse_block(),
                _d(f"""
            def main(argv=None):
                args = parse_args(argv)
                x, y = make_data(seed=args.seed)
                ds = tf.data.Dataset.from_tensor_slices((x, y)).shuffle({self.pick([256, 1024, 4096])}).batch(args.batch_size)
                for epoch in range(args.epochs):
                    start = time.time()
                    train_acc.reset_state()
                    for step, (xb, yb) in enumerate(ds):
                        loss = train_step(xb, yb)
                        if step % {self.pick([10, 50, 100])} == 0:
                            print("epoch %d step %d loss %.4f" % (epoch, step, float(loss)))
                    acc = eval_step(x[:256], y[:256])
                    print("epoch %d: train acc %.3f, eval acc %.3f (%.1fs)" % (epoch, float(train_acc.result()), float(acc), time.time() - start))


            if __name__ == "__main__":
                main()
            """),
            ]
        )

    def subclassed(self) -> str:
        k = "tf.keras"
        cls = self.pick(["ResidualMLP", "TinyConvNet", "Classifier", "Encoder", "SmallResNet", "Head"])
        nc = self.pick([2, 5, 10])
        bn = self.chance(0.7)
        call_training = self.chance(0.8)
        blocks = self.r.randint(1, 3)
        init_lines = [f"        self.dense_in = {k}.layers.Dense({self.units()}, activation={self.pick(ACTS)!r})"]
        call_lines = ["        x = self.dense_in(inputs)"]
        for b in range(blocks):
            init_lines.append(f"        self.block{b} = {k}.layers.Dense({self.units()})")
            call_lines.append(f"        x = self.block{b}(x)")
            if bn:
                init_lines.append(f"        self.bn{b} = {k}.layers.BatchNormalization()")
                call_lines.append(f"        x = self.bn{b}(x{', training=training' if call_training else ''})")
            call_lines.append(f"        x = tf.nn.{self.pick(['relu', 'elu', 'gelu', 'silu'])}(x)")
        if self.chance(0.5):
            init_lines.append(f"        self.drop = {k}.layers.Dropout({self.pick(['0.1', '0.25', '0.5'])})")
            call_lines.append("        x = self.drop(x, training=training)")
        init_lines.append(f"        self.out = {k}.layers.Dense({nc})")
        call_lines.append("        return self.out(x)")
        custom_step = self.chance(0.5)
        train_step = ""
        if custom_step:
            tr = "training=True" if self.chance(0.85) else ""
            train_step = _d(f"""
                def train_step(self, data):
                    x, y = data
                    with tf.GradientTape() as tape:
                        y_pred = self(x{", " + tr if tr else ""})
                        loss = self.compute_loss(y=y, y_pred=y_pred)
                    grads = tape.gradient(loss, self.trainable_variables)
                    self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
                    for metric in self.metrics:
                        if metric.name == "loss":
                            metric.update_state(loss)
                        else:
                            metric.update_state(y, y_pred)
                    return {{m.name: m.result() for m in self.metrics}}
            """)
            train_step = textwrap.indent(train_step, "    ")
        opt, lr = self.pick(OPTS2)
        return "\n\n".join(
            [
                self.header(f"Subclassed Keras model `{cls}`."),
                self.imports("tf2"),
                f"class {cls}({k}.Model):\n"
                f"    def __init__(self, **kwargs):\n        super().__init__(**kwargs)\n"
                + "\n".join(init_lines)
                + "\n\n"
                "    def call(self, inputs, training=False):\n"
                + "\n".join(call_lines)
                + "\n"
                + ("\n" + train_step if train_step else ""),
                self.helpers(),
                self.numpy_data(self.pick([16, 32]), nc, 2048),
                self.argparse_block(),
                _d(f"""
            def main(argv=None):
                args = parse_args(argv)
                model = {cls}()
                model.compile(optimizer={k}.optimizers.{opt}({lr}),
                              loss={k}.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
                x, y = make_data(seed=args.seed)
                model.fit(x, y, epochs=args.epochs, batch_size=args.batch_size, validation_split=0.1)
                model.summary()


            if __name__ == "__main__":
                main()
            """),
            ]
        )

    def tf1_graph(self) -> str:
        nf, nc = self.pick([10, 20, 50, 784]), self.pick([2, 10])
        hidden = [self.units() for _ in range(self.r.randint(1, 3))]
        bn = self.chance(0.7)
        update_ops = self.pick(["control", "control", "group", "missing"]) if bn else "none"
        opt = self.pick(OPTS1)
        compat = self.chance(0.4)
        tfmod = "tf.compat.v1" if compat else "tf"
        lines = [
            f"x = {tfmod}.placeholder(tf.float32, [None, {nf}], name='x')",
            f"y = {tfmod}.placeholder(tf.int64, [None], name='y')",
            f"is_training = {tfmod}.placeholder_with_default(False, shape=(), name='is_training')",
            "",
            "h = x",
        ]
        for i, u in enumerate(hidden):
            init = self.pick(
                [
                    "",
                    ", kernel_initializer=tf.glorot_uniform_initializer()",
                    f", kernel_initializer=tf.random_normal_initializer(stddev={self.pick(['0.01', '0.1', '1e-4', '0.001'])})",
                    ", kernel_initializer=tf.zeros_initializer()" if self.chance(0.1) else "",
                ]
            )
            lines.append(f"h = {tfmod}.layers.dense(h, {u}{init}, name='fc{i}')")
            if bn:
                lines.append(f"h = {tfmod}.layers.batch_normalization(h, training=is_training, name='bn{i}')")
            lines.append(f"h = tf.nn.{self.pick(['relu', 'elu', 'tanh'])}(h)")
            if self.chance(0.3):
                lines.append(f"h = {tfmod}.layers.dropout(h, rate={self.pick(['0.2', '0.5'])}, training=is_training)")
        lines.append(f"logits = {tfmod}.layers.dense(h, {nc}, name='logits')")
        if self.chance(0.15):
            lines.append("probs = tf.nn.softmax(logits)")
            lines.append(f"loss = tf.reduce_mean({tfmod}.losses.sparse_softmax_cross_entropy(labels=y, logits=probs))")
        else:
            lines.append(
                "loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))"
            )
        lines.append(f"global_step = {tfmod}.train.get_or_create_global_step()")
        lines.append(f"learning_rate = {self.pick(['0.01', '1e-3', '0.1'])}")
        lines.append(f"optimizer = {tfmod}.train.{opt}")
        if update_ops == "control":
            lines += [
                f"update_ops = {tfmod}.get_collection({tfmod}.GraphKeys.UPDATE_OPS)",
                "with tf.control_dependencies(update_ops):",
                "    train_op = optimizer.minimize(loss, global_step=global_step)",
            ]
        elif update_ops == "group":
            lines += [
                "train_op = optimizer.minimize(loss, global_step=global_step)",
                f"train_op = tf.group([train_op, {tfmod}.get_collection({tfmod}.GraphKeys.UPDATE_OPS)])",
            ]
        else:
            lines += ["train_op = optimizer.minimize(loss, global_step=global_step)"]
        lines.append("accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), y), tf.float32))")
        graph = "\n".join(lines) + "\n"
        disable = f"{tfmod}.disable_eager_execution()\n" if compat or self.chance(0.5) else ""
        if not compat and disable:
            disable = "tf.compat.v1.disable_eager_execution()\n"
        sess = "tf.compat.v1.Session" if compat else "tf.Session"
        init = f"{tfmod}.global_variables_initializer()"
        return "\n\n".join(
            [
                self.header("TF1 graph-mode training with placeholders and a Session."),
                self.imports("tf1"),
                disable,
                self.numpy_data(nf, nc, self.pick([2000, 6000])),
                graph,
                self.helpers(),
                _d(f"""
            def batches(x, y, batch_size, rng):
                order = rng.permutation(len(x))
                for start in range(0, len(x), batch_size):
                    idx = order[start:start + batch_size]
                    yield x[idx], y[idx]


            def main(epochs={self.pick([1, 3, 10])}, batch_size={self.pick([32, 64, 128])}):
                xs, ys = make_data()
                rng = np.random.RandomState(0)
                saver = {tfmod}.train.Saver(max_to_keep={self.r.randint(1, 5)})
                with {sess}() as sess:
                    sess.run({init})
                    for epoch in range(epochs):
                        for xb, yb in batches(xs, ys, batch_size, rng):
                            _, l, step = sess.run([train_op, loss, global_step], feed_dict={{x: xb, y: yb, is_training: True}})
                            if step % {self.pick([50, 100, 500])} == 0:
                                print("step", step, "loss", l)
                        acc = sess.run(accuracy, feed_dict={{x: xs[:500], y: ys[:500]}})
                        print("epoch", epoch, "accuracy", acc)
                    saver.save(sess, "./ckpt/model", global_step=global_step)


            if __name__ == "__main__":
                main()
            """),
            ]
        )

    def tf1_lowlevel(self) -> str:
        nf, nc = self.pick([4, 16, 64, 784]), self.pick([2, 10])
        sizes = [nf] + [self.units() for _ in range(self.r.randint(1, 3))] + [nc]
        stddev = self.pick(["0.1", "0.01", "0.05", "1e-4", "1e-5", "np.sqrt(2.0 / fan_in)"])
        lines = [
            "def dense(x, fan_in, fan_out, name, activation=tf.nn.relu):",
            "    with tf.variable_scope(name):",
            f"        w = tf.get_variable('w', [fan_in, fan_out], initializer=tf.truncated_normal_initializer(stddev={stddev}))"
            if "fan_in" not in stddev
            else f"        w = tf.Variable(tf.random_normal([fan_in, fan_out], stddev={stddev}), name='w')",
            f"        b = tf.get_variable('b', [fan_out], initializer=tf.constant_initializer({self.pick(['0.0', '0.1'])}))",
            "        out = tf.matmul(x, w) + b",
            "        return activation(out) if activation is not None else out",
            "",
        ]
        graph = [
            f"X = tf.placeholder(tf.float32, [None, {nf}])",
            f"Y = tf.placeholder(tf.float32, [None, {nc}])",
            "h = X",
        ]
        for i in range(len(sizes) - 2):
            graph.append(f"h = dense(h, {sizes[i]}, {sizes[i + 1]}, 'layer{i}')")
        graph.append(f"logits = dense(h, {sizes[-2]}, {sizes[-1]}, 'out', activation=None)")
        loss_kind = self.r.randint(0, 3)
        if loss_kind == 0:
            graph.append("loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits_v2(labels=Y, logits=logits))")
        elif loss_kind == 1:
            graph.append("pred = tf.nn.softmax(logits)")
            graph.append("loss = tf.reduce_mean(-tf.reduce_sum(Y * tf.log(pred), reduction_indices=[1]))")
        elif loss_kind == 2:
            graph.append("pred = tf.nn.softmax(logits)")
            graph.append(
                "loss = tf.reduce_mean(-tf.reduce_sum(Y * tf.log(tf.clip_by_value(pred, 1e-10, 1.0)), axis=1))"
            )
        else:
            graph.append("loss = tf.losses.softmax_cross_entropy(Y, logits)")
        var_list = self.pick(["tf.trainable_variables()", "tf.trainable_variables()", "tf.global_variables()"])
        if self.chance(0.5):
            graph += [
                f"opt = tf.train.{self.pick(OPTS1).replace('learning_rate', self.pick(['0.01', '0.001']))}",
                f"grads_and_vars = opt.compute_gradients(loss, var_list={var_list})",
                "grads_and_vars = [(tf.clip_by_norm(g, 1.0), v) for g, v in grads_and_vars]"
                if self.chance(0.3)
                else "grads_and_vars = [(g, v) for g, v in grads_and_vars if g is not None]",
                "train = opt.apply_gradients(grads_and_vars)",
            ]
        else:
            graph += [
                f"grads = tf.gradients(loss, {var_list})",
                f"train = tf.train.{self.pick(OPTS1).replace('learning_rate', '0.01')}.apply_gradients(zip(grads, {var_list}))",
            ]
        return "\n\n".join(
            [
                self.header("Low-level TF1 network with tf.get_variable."),
                self.imports("tf1"),
                "\n".join(lines),
                "\n".join(graph) + "\n",
                self.helpers(),
                _d(f"""
            def one_hot(labels, n):
                out = np.zeros((len(labels), n), dtype=np.float32)
                out[np.arange(len(labels)), labels] = 1.0
                return out


            if __name__ == "__main__":
                rng = np.random.RandomState({self.r.randint(0, 99)})
                data = rng.randn({self.pick([500, 1000])}, {nf}).astype(np.float32)
                labels = one_hot(rng.randint(0, {nc}, len(data)), {nc})
                with tf.Session() as sess:
                    sess.run(tf.global_variables_initializer())
                    for i in range({self.pick([100, 1000, 5000])}):
                        idx = rng.randint(0, len(data), {self.pick([32, 64])})
                        _, l = sess.run([train, loss], feed_dict={{X: data[idx], Y: labels[idx]}})
                        if i % 100 == 0:
                            print(i, l)
            """),
            ]
        )

    def gan(self) -> str:
        k = "tf.keras"
        z = self.pick([16, 32, 64, 100])
        nf = self.pick([2, 8, 28 * 28])
        g_layers = "\n".join(
            f"        {k}.layers.Dense({self.units()}, activation={self.pick(['relu', 'elu'])!r}),"
            for _ in range(self.r.randint(1, 3))
        )
        d_layers = "\n".join(
            f"        {k}.layers.Dense({self.units()}),"
            + (f"\n        {k}.layers.LeakyReLU(0.2)," if self.chance(0.7) else "")
            for _ in range(self.r.randint(1, 3))
        )
        bn = f"\n        {k}.layers.BatchNormalization()," if self.chance(0.5) else ""
        from_logits = self.chance(0.8)
        d_out = f"{k}.layers.Dense(1)" if from_logits else f"{k}.layers.Dense(1, activation='sigmoid')"
        g_training = ", training=True" if self.chance(0.8) else ""
        d_loss = self.pick(
            [
                "cross_entropy(tf.ones_like(real_out), real_out) + cross_entropy(tf.zeros_like(fake_out), fake_out)",
                "-tf.reduce_mean(tf.math.log(tf.sigmoid(real_out)) + tf.math.log(1.0 - tf.sigmoid(fake_out)))",
            ]
        )
        return "\n\n".join(
            [
                self.header("A small GAN with two GradientTapes."),
                self.imports("tf2"),
                f"LATENT = {z}\nFEATURES = {nf}\n",
                _d(f"""
            def make_generator():
                return {k}.Sequential([
                    {k}.Input(shape=(LATENT,)),
            """)
                + g_layers
                + bn
                + f"\n        {k}.layers.Dense(FEATURES, activation='tanh'),\n    ])\n",
                _d(f"""
            def make_discriminator():
                return {k}.Sequential([
                    {k}.Input(shape=(FEATURES,)),
            """)
                + d_layers
                + f"\n        {d_out},\n    ])\n",
                f"generator = make_generator()\ndiscriminator = make_discriminator()\n"
                f"cross_entropy = {k}.losses.BinaryCrossentropy(from_logits={from_logits})\n"
                f"g_opt = {k}.optimizers.Adam({self.pick(['1e-4', '2e-4'])}, beta_1=0.5)\n"
                f"d_opt = {k}.optimizers.Adam({self.pick(['1e-4', '2e-4'])}, beta_1=0.5)\n",
                self.helpers(),
                _d(f"""
            @tf.function
            def train_step(real):
                noise = tf.random.normal([tf.shape(real)[0], LATENT])
                with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
                    fake = generator(noise{g_training})
                    real_out = discriminator(real, training=True)
                    fake_out = discriminator(fake, training=True)
                    g_loss = cross_entropy(tf.ones_like(fake_out), fake_out)
                    d_loss = {d_loss}
                g_grads = g_tape.gradient(g_loss, generator.trainable_variables)
                d_grads = d_tape.gradient(d_loss, discriminator.trainable_variables)
                g_opt.apply_gradients(zip(g_grads, generator.trainable_variables))
                d_opt.apply_gradients(zip(d_grads, discriminator.trainable_variables))
                return g_loss, d_loss


            def real_batches(n_batches, batch_size={self.pick([32, 64, 128])}):
                for _ in range(n_batches):
                    yield np.tanh(np.random.randn(batch_size, FEATURES)).astype("float32")


            if __name__ == "__main__":
                for step, batch in enumerate(real_batches({self.pick([100, 1000])})):
                    g_loss, d_loss = train_step(batch)
                    if step % 50 == 0:
                        print(step, float(g_loss), float(d_loss))
            """),
            ]
        )

    def rnn(self) -> str:
        k = "tf.keras"
        cell = self.pick(["LSTM", "GRU", "SimpleRNN"])
        vocab, emb, units = self.pick([1000, 5000, 20000]), self.pick([32, 64, 128]), self.pick([32, 64, 128])
        bidir = self.chance(0.4)
        layer = f"{k}.layers.{cell}({units}, dropout={self.pick(['0.0', '0.2'])})"
        if bidir:
            layer = f"{k}.layers.Bidirectional({layer})"
        return "\n\n".join(
            [
                self.header(f"Text classifier with a {cell}."),
                self.imports("keras"),
                f"VOCAB, MAXLEN = {vocab}, {self.pick([50, 100, 200])}\n",
                _d(f"""
            def build(num_classes={self.pick([2, 4, 20])}):
                model = {k}.Sequential()
                model.add({k}.layers.Embedding(VOCAB, {emb}))
                model.add({layer})
                if {self.chance(0.5)}:
                    model.add({k}.layers.Dropout(0.3))
                model.add({k}.layers.Dense(num_classes))
                return model


            def fake_text(n, rng):
                x = rng.randint(1, VOCAB, size=(n, MAXLEN))
                y = (x[:, 0] % 2).astype("int64")
                return x, y
            """),
                self.helpers(),
                _d(f"""
            if __name__ == "__main__":
                rng = np.random.RandomState(0)
                x, y = fake_text({self.pick([1000, 5000])}, rng)
                model = build()
                optimizer = {k}.optimizers.{self.pick(OPTS2)[0]}()
                loss_fn = {k}.losses.SparseCategoricalCrossentropy(from_logits=True)
                dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(64)
                for epoch in range({self.pick([1, 3])}):
                    for xb, yb in dataset:
                        with tf.GradientTape() as tape:
                            logits = model(xb{", training=True" if self.chance(0.7) else ""})
                            loss = loss_fn(yb, logits)
                        grads = tape.gradient(loss, model.trainable_variables)
                        {"grads, _ = tf.clip_by_global_norm(grads, 5.0)" if self.chance(0.5) else "pass"}
                        optimizer.apply_gradients(zip(grads, model.trainable_variables))
                    print("epoch", epoch, float(loss))
            """),
            ]
        )

    def transfer(self) -> str:
        k = "tf.keras"
        app = self.pick(["MobileNetV2", "ResNet50", "EfficientNetB0", "VGG16", "DenseNet121", "InceptionV3"])
        frozen = self.chance(0.6)
        size = self.pick([96, 128, 160, 224])
        return "\n\n".join(
            [
                self.header(f"Fine-tuning {app} on a small image set."),
                self.imports("keras"),
                _d(f"""
            IMG = {size}
            base = {k}.applications.{app}(input_shape=(IMG, IMG, 3), include_top=False, weights=None)
            base.trainable = {not frozen}
            inputs = {k}.Input(shape=(IMG, IMG, 3))
            x = base(inputs, training={self.pick(["False", "False", "True"])})
            x = {k}.layers.GlobalAveragePooling2D()(x)
            x = {k}.layers.Dropout({self.pick(["0.2", "0.3"])})(x)
            outputs = {k}.layers.Dense({self.pick([2, 5, 102])})(x)
            model = {k}.Model(inputs, outputs)
            optimizer = {k}.optimizers.Adam({self.pick(["1e-4", "1e-5", "1e-3"])})
            loss_fn = {k}.losses.SparseCategoricalCrossentropy(from_logits=True)
            """),
                self.helpers(),
                _d(f"""
            def train(dataset, epochs={self.pick([1, 5, 10])}):
                for epoch in range(epochs):
                    for images, labels in dataset:
                        with tf.GradientTape() as tape:
                            logits = model(images{", training=True" if self.chance(0.7) else ""})
                            loss = loss_fn(labels, logits)
                        grads = tape.gradient(loss, model.trainable_variables)
                        optimizer.apply_gradients(zip(grads, model.trainable_variables))
                    print(epoch, float(loss))


            if __name__ == "__main__":
                images = np.random.rand(32, IMG, IMG, 3).astype("float32")
                labels = np.random.randint(0, 2, 32)
                train(tf.data.Dataset.from_tensor_slices((images, labels)).batch(8))
            """),
            ]
        )

    def metric_learning(self) -> str:
        k = "tf.keras"
        eps = self.chance(0.5)
        dist = (
            "tf.sqrt(tf.maximum(tf.reduce_sum(tf.square(a - b), axis=-1), 1e-12))"
            if eps
            else self.pick(["tf.sqrt(tf.reduce_sum(tf.square(a - b), axis=-1))", "tf.norm(a - b, axis=-1)"])
        )
        return "\n\n".join(
            [
                self.header("Triplet-loss embedding training."),
                self.imports("tf2"),
                _d(f"""
            EMB = {self.pick([8, 16, 64, 128])}
            MARGIN = {self.pick(["0.2", "0.5", "1.0"])}

            embedder = {k}.Sequential([
                {k}.Input(shape=({self.pick([16, 32, 128])},)),
                {k}.layers.Dense({self.units()}, activation="relu"),
                {k}.layers.Dense(EMB),
                {k}.layers.Lambda(lambda t: tf.math.l2_normalize(t, axis=-1)),
            ])
            optimizer = {k}.optimizers.{self.pick(OPTS2)[0]}()


            def distance(a, b):
                return {dist}


            def triplet_loss(anchor, positive, negative):
                return tf.reduce_mean(tf.maximum(distance(anchor, positive) - distance(anchor, negative) + MARGIN, 0.0))


            @tf.function
            def step(a, p, n):
                with tf.GradientTape() as tape:
                    loss = triplet_loss(embedder(a, training=True), embedder(p, training=True), embedder(n, training=True))
                grads = tape.gradient(loss, embedder.trainable_variables)
                optimizer.apply_gradients(zip(grads, embedder.trainable_variables))
                return loss
            """),
                self.helpers(),
                _d(f"""
            if __name__ == "__main__":
                dim = embedder.input_shape[-1]
                for i in range({self.pick([100, 500])}):
                    a = np.random.randn(32, dim).astype("float32")
                    p = a + 0.05 * np.random.randn(32, dim).astype("float32")
                    n = np.random.randn(32, dim).astype("float32")
                    loss = step(a, p, n)
                    if i % 50 == 0:
                        print(i, float(loss))
            """),
            ]
        )

    def vae(self) -> str:
        k = "tf.keras"
        latent = self.pick([2, 8, 16, 32])
        return "\n\n".join(
            [
                self.header("Variational autoencoder."),
                self.imports("tf2"),
                _d(f"""
            LATENT = {latent}
            INPUT = {self.pick([64, 784])}


            class VAE({k}.Model):
                def __init__(self):
                    super().__init__()
                    self.enc = {k}.Sequential([{k}.layers.Dense({self.units()}, activation="relu"), {k}.layers.Dense(2 * LATENT)])
                    self.dec = {k}.Sequential([{k}.layers.Dense({self.units()}, activation="relu"), {k}.layers.Dense(INPUT)])

                def encode(self, x):
                    mean, logvar = tf.split(self.enc(x), 2, axis=1)
                    return mean, logvar

                def reparameterize(self, mean, logvar):
                    eps = tf.random.normal(tf.shape(mean))
                    return eps * tf.exp(logvar * 0.5) + mean

                def call(self, x):
                    mean, logvar = self.encode(x)
                    z = self.reparameterize(mean, logvar)
                    return self.dec(z), mean, logvar


            model = VAE()
            optimizer = {k}.optimizers.Adam({self.pick(["1e-3", "1e-4"])})


            def compute_loss(x):
                logits, mean, logvar = model(x)
                recon = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits), axis=1)
                kl = -0.5 * tf.reduce_sum(1 + logvar - tf.square(mean) - tf.exp(logvar), axis=1)
                return tf.reduce_mean(recon + kl)


            @tf.function
            def train_step(x):
                with tf.GradientTape() as tape:
                    loss = compute_loss(x)
                gradients = tape.gradient(loss, model.trainable_variables)
                optimizer.apply_gradients(zip(gradients, model.trainable_variables))
                return loss
            """),
                self.helpers(),
                _d(f"""
            if __name__ == "__main__":
                data = (np.random.rand({self.pick([512, 2048])}, INPUT) > 0.5).astype("float32")
                ds = tf.data.Dataset.from_tensor_slices(data).shuffle(512).batch({self.pick([32, 64])})
                for epoch in range({self.pick([1, 5, 20])}):
                    for batch in ds:
                        loss = train_step(batch)
                    print("epoch", epoch, "elbo", -float(loss))
            """),
            ]
        )

    def estimator_like(self) -> str:
        """TF1 ``model_fn`` style with a mode switch (also the misspelled-mode case)."""
        mode_check = self.pick(
            ["mode == tf.estimator.ModeKeys.TRAIN", "mode == tf.estimator.ModeKeys.TRAIN", "mode == 'train'"]
        )
        bn_training = self.pick(["is_training", "is_training", "True"])
        opt1 = self.pick(OPTS1).replace("learning_rate", 'params.get("lr", 0.01)')
        return "\n\n".join(
            [
                self.header("model_fn for a TF1 Estimator-style training loop."),
                self.imports("tf1"),
                _d(f"""
            def model_fn(features, labels, mode, params):
                is_training = {mode_check}
                net = features["x"]
                for i, units in enumerate(params.get("hidden", [{self.units()}, {self.units()}])):
                    net = tf.layers.dense(net, units, name="dense%d" % i)
                    net = tf.layers.batch_normalization(net, training={bn_training}, name="bn%d" % i)
                    net = tf.nn.relu(net)
                logits = tf.layers.dense(net, params.get("classes", {self.pick([2, 10])}))
                loss = tf.losses.sparse_softmax_cross_entropy(labels=labels, logits=logits)
                optimizer = tf.train.{opt1}
                {"update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)" if self.chance(0.7) else "update_ops = []"}
                with tf.control_dependencies(update_ops):
                    train_op = optimizer.minimize(loss, global_step=tf.train.get_global_step())
                return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)
            """),
                self.helpers(),
                _d(f"""
            def input_fn(n={self.pick([256, 1024])}, batch_size=32):
                x = np.random.randn(n, {self.pick([4, 16])}).astype(np.float32)
                y = np.random.randint(0, 2, n)
                return tf.data.Dataset.from_tensor_slices(({{"x": x}}, y)).repeat().batch(batch_size)


            if __name__ == "__main__":
                estimator = tf.estimator.Estimator(model_fn=model_fn, params={{"hidden": [32, 16]}})
                estimator.train(input_fn=input_fn, steps={self.pick([100, 1000])})
            """),
            ]
        )

    def plain_helper(self) -> str:
        """A module of a training project that does not use TensorFlow at all."""
        return "\n\n".join(
            [
                f'"""Utilities for experiment {self.i}: configuration, logging, bookkeeping (no TensorFlow)."""',
                "import argparse\nimport json\nimport math\nimport os\nimport time\n",
                self.helpers() or "def noop():\n    return None\n",
                self.helpers() or "VERSION = 1\n",
                self.argparse_block(),
                _d(f"""
            CONFIG = {{
                "epochs": {self.r.randint(1, 50)},
                "batch_size": {self.pick([16, 32, 64])},
                "lr": {self.pick(["1e-3", "3e-4"])},
                "schedule": {self.pick(['"cosine"', '"step"', '"constant"'])},
            }}


            def load_config(path=None):
                cfg = dict(CONFIG)
                if path and os.path.exists(path):
                    with open(path) as fh:
                        cfg.update(json.load(fh))
                return cfg
            """),
            ]
        )

    TEMPLATES = [
        ("keras_fit", 14),
        ("tape_loop", 16),
        ("subclassed", 10),
        ("tf1_graph", 12),
        ("tf1_lowlevel", 10),
        ("gan", 7),
        ("rnn", 7),
        ("transfer", 6),
        ("metric_learning", 5),
        ("vae", 5),
        ("estimator_like", 4),
        ("plain_helper", 6),
    ]

    def script(self) -> tuple[str, str]:
        names = [n for n, _ in self.TEMPLATES]
        weights = [w for _, w in self.TEMPLATES]
        kind = self.r.choices(names, weights)[0]
        code = getattr(self, kind)()
        while "\n\n\n\n" in code:
            code = code.replace("\n\n\n\n", "\n\n\n")
        return kind, code.rstrip("\n") + "\n"


def generate(folder: str, count: int = 300, seed: int = 20240611) -> list[str]:
    """Write ``count`` scripts (and an empty ``tflint-grad.toml``) into ``folder``; return the paths."""
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    with open(os.path.join(folder, "tflint-grad.toml"), "w", encoding="utf-8") as fh:
        fh.write("# benchmark corpus: default settings\n")
    rng = random.Random(seed)
    paths = []
    for i in range(count):
        kind, code = Gen(rng, i).script()
        sub = os.path.join(folder, f"project_{i // 25:02d}")
        os.makedirs(sub, exist_ok=True)
        name = f"utils_{i:03d}.py" if kind == "plain_helper" else f"train_{kind}_{i:03d}.py"
        path = os.path.join(sub, name)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(code)
        paths.append(path)
    return paths


if __name__ == "__main__":
    import sys

    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), ".corpus")
    files = generate(out, int(sys.argv[2]) if len(sys.argv) > 2 else 300)
    print(f"wrote {len(files)} scripts to {out}")
