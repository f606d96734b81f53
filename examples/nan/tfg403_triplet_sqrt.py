"""TFG403 (sqrt-at-zero): the Euclidean distances of a triplet loss, sqrt with no epsilon.

`pos_dist = tf.sqrt(tf.reduce_sum(tf.square(emb_a - emb_p), axis=1))` is exactly 0 for the
triplets whose positive is the anchor itself (half of the batch: no augmentation). The loss
is finite (sqrt(0) = 0), but the derivative of sqrt at 0 is infinite: the gradient is
Inf * 0 = NaN, the first optimizer step writes NaN into every weight, and the loss is NaN from
the second step on. The fix (fixed/) takes `tf.sqrt(tf.maximum(..., 1e-12))`.

TF2 eager code: python examples/nan/tfg403_triplet_sqrt.py
"""
import numpy as np
import tensorflow as tf

np.random.seed(0)
tf.random.set_seed(0)

N_FEATURES, BATCH, MARGIN = 16, 32, 2.0
data = np.random.randn(512, N_FEATURES).astype("float32")

embedding = tf.keras.Sequential([
    tf.keras.Input(shape=(N_FEATURES,)),
    tf.keras.layers.Dense(32, activation="relu"),
    tf.keras.layers.Dense(8),
])
optimizer = tf.keras.optimizers.Adam(1e-3)


def make_triplets():
    anchor = data[np.random.randint(0, len(data), BATCH)]
    negative = data[np.random.randint(0, len(data), BATCH)]
    positive = anchor.copy()
    positive[BATCH // 2:] += 0.1 * np.random.randn(BATCH - BATCH // 2, N_FEATURES).astype("float32")
    return anchor, positive, negative


for step in range(20):
    anchor, positive, negative = make_triplets()
    with tf.GradientTape() as tape:
        emb_a = embedding(anchor, training=True)
        emb_p = embedding(positive, training=True)
        emb_n = embedding(negative, training=True)
        pos_dist = tf.sqrt(tf.reduce_sum(tf.square(emb_a - emb_p), axis=1))
        neg_dist = tf.sqrt(tf.reduce_sum(tf.square(emb_a - emb_n), axis=1))
        loss = tf.reduce_mean(tf.maximum(pos_dist - neg_dist + MARGIN, 0.0))
    grads = tape.gradient(loss, embedding.trainable_variables)
    nan_grads = sum(int(tf.reduce_any(tf.math.is_nan(g))) for g in grads)
    optimizer.apply_gradients(zip(grads, embedding.trainable_variables))
    if step % 5 == 0 or nan_grads:
        print("step %d: loss %.4f, gradients with NaN: %d of %d" % (step, float(loss), nan_grads, len(grads)))
    if not np.isfinite(float(loss)):
        print("loss became NaN at step %d" % step)
        break
