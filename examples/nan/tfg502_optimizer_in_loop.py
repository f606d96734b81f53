"""TFG502 (optimizer-in-loop): a new Adam optimizer constructed at every training step.

The optimizer is created inside the loop, so each step starts from fresh slot variables: Adam's
moment estimates are zero and its step count is 1. Its first step moves every weight by about
the learning rate in the direction of the gradient's sign, whatever the gradient's size, so
the loss stalls at a noisy plateau instead of converging. The fix (fixed/) creates the
optimizer once, before the loop.

TF2 eager code: python examples/nan/tfg502_optimizer_in_loop.py
"""
import numpy as np
import tensorflow as tf

np.random.seed(0)
tf.random.set_seed(0)

x_all = np.random.randn(512, 8).astype("float32")
true_w = np.random.randn(8, 1).astype("float32")
y_all = x_all @ true_w + 0.01 * np.random.randn(512, 1).astype("float32")

model = tf.keras.Sequential([tf.keras.Input(shape=(8,)), tf.keras.layers.Dense(16, activation="relu"), tf.keras.layers.Dense(1)])

for step in range(200):
    optimizer = tf.keras.optimizers.Adam(learning_rate=0.05)
    idx = np.random.randint(0, len(x_all), 64)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x_all[idx], training=True) - y_all[idx]))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    if step % 40 == 0 or step == 199:
        print("step %d: loss %.5f" % (step, float(loss)))
