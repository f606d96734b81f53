"""TFG402 (softmax-logits-mismatch): a softmax output passed to a loss that expects logits.

The classifier ends in `Dense(10, activation="softmax")`, and the custom training loop feeds its
output to `tf.nn.sparse_softmax_cross_entropy_with_logits`, which applies softmax a second time.
The doubly squashed probabilities stay close to uniform: the loss cannot go below
-log(e / (e + 9)) = 1.46 however well the model classifies, the gradients are small and the
model stays underconfident (loss 1.53 after 150 steps here, against 0.24 for the fix). The fix
(fixed/) removes the activation of the last layer (the model then outputs logits; apply
`tf.nn.softmax` to them for probabilities).

TF2 eager code: python examples/nan/tfg402_softmax_as_logits.py
"""
import numpy as np
import tensorflow as tf

np.random.seed(0)
tf.random.set_seed(0)

N_FEATURES, N_CLASSES = 20, 10
centers = np.random.randn(N_CLASSES, N_FEATURES)
y_all = np.random.randint(0, N_CLASSES, size=1024)
x_all = (centers[y_all] + np.random.randn(1024, N_FEATURES)).astype("float32")

model = tf.keras.Sequential([
    tf.keras.Input(shape=(N_FEATURES,)),
    tf.keras.layers.Dense(64, activation="relu"),
    tf.keras.layers.Dense(N_CLASSES, activation="softmax"),
])
optimizer = tf.keras.optimizers.Adam(1e-3)

for step in range(150):
    idx = np.random.randint(0, len(x_all), 64)
    x, y = x_all[idx], y_all[idx]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=model(x, training=True)))
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    if step % 30 == 0 or step == 149:
        accuracy = np.mean(np.argmax(model(x_all).numpy(), axis=1) == y_all)
        print("step %d: loss %.4f, accuracy %.3f" % (step, float(loss), accuracy))
