"""A harmless `model.variables`: a Dense-only model has no non-trainable variables.

The static pass sees every layer of the model, so it does not flag TFG101 here (it reports
only what the code proves). Earlier versions flagged it and relied on `--confirm` to refute
it: all variables in the list are trainable.
"""
import numpy as np
import tensorflow as tf

np.random.seed(0)
model = tf.keras.Sequential([
    tf.keras.Input(shape=(4,)),
    tf.keras.layers.Dense(8, activation="relu"),
    tf.keras.layers.Dense(1),
])
opt = tf.keras.optimizers.SGD(0.01)

for step in range(100):
    x = np.random.randn(16, 4).astype(np.float32)
    y = x.sum(axis=1, keepdims=True)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
    grads = tape.gradient(loss, model.variables)
    opt.apply_gradients(zip(grads, model.variables))
print("final loss", float(loss))
