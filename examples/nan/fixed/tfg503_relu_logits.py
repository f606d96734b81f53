"""TFG503 (activation-on-logits): a ReLU on the output layer whose outputs are used as logits.

The last layer is `Dense(10, activation="relu")` and the model is compiled with
`SparseCategoricalCrossentropy(from_logits=True)`. Every negative logit is clamped to 0 with a
zero gradient, so the classes whose logits go negative stop learning and the loss plateaus
well above what the same network reaches without the ReLU (fixed/: `Dense(10)`).

TF2 Keras code: python examples/nan/tfg503_relu_logits.py
"""
import numpy as np
import tensorflow as tf

np.random.seed(0)
tf.random.set_seed(0)

N_FEATURES, N_CLASSES = 20, 10
centers = np.random.randn(N_CLASSES, N_FEATURES) * 2.0
y_train = np.random.randint(0, N_CLASSES, size=2048)
x_train = (centers[y_train] + np.random.randn(2048, N_FEATURES)).astype("float32")

model = tf.keras.Sequential([
    tf.keras.Input(shape=(N_FEATURES,)),
    tf.keras.layers.Dense(64, activation="relu"),
    tf.keras.layers.Dense(N_CLASSES),
])
model.compile(
    optimizer=tf.keras.optimizers.Adam(1e-2),
    loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
history = model.fit(x_train, y_train, batch_size=64, epochs=5, verbose=0)
for epoch, (loss, acc) in enumerate(zip(history.history["loss"], history.history["accuracy"])):
    print("epoch %d: loss %.4f, accuracy %.3f" % (epoch, loss, acc))
