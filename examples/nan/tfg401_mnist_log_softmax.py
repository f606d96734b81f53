"""TFG401 (unstable-log-probability): the classic TF1 MNIST tutorial loss, on synthetic digits.

`cross_entropy = -tf.reduce_sum(y_ * tf.log(y_conv))` takes the log of a softmax output. Once
the network is confident, the probability of some class underflows to exactly 0 in float32:
log(0) = -inf, 0 * -inf = NaN, and the loss and every weight become NaN. Here the pixels are not
scaled to [0, 1], so the logits are large and it happens at the second step; with scaled inputs
the same loss goes NaN after hundreds or thousands of steps. The fix (fixed/) clips the
probabilities before the log, and the same network trains to 100% training accuracy.

TF1 graph code: run it under tf.compat.v1 (see examples/seeds/README.md).
"""
import numpy as np
import tensorflow as tf

np.random.seed(0)
tf.set_random_seed(0)

# Synthetic "MNIST": 8x8 images, raw pixel values in [0, 255], 10 classes.
N_PIXELS, N_CLASSES = 64, 10
prototypes = np.random.rand(N_CLASSES, N_PIXELS) * 255.0
labels = np.random.randint(0, N_CLASSES, size=2000)
images = np.clip(prototypes[labels] + np.random.randn(2000, N_PIXELS) * 40.0, 0, 255).astype(np.float32)
onehot = np.eye(N_CLASSES, dtype=np.float32)[labels]

x = tf.placeholder(tf.float32, [None, N_PIXELS])
y_ = tf.placeholder(tf.float32, [None, N_CLASSES])

W_fc1 = tf.Variable(tf.truncated_normal([N_PIXELS, 32], stddev=0.05))
b_fc1 = tf.Variable(tf.constant(0.1, shape=[32]))
h_fc1 = tf.nn.relu(tf.matmul(x, W_fc1) + b_fc1)
W_fc2 = tf.Variable(tf.truncated_normal([32, N_CLASSES], stddev=0.05))
b_fc2 = tf.Variable(tf.constant(0.1, shape=[N_CLASSES]))
y_conv = tf.nn.softmax(tf.matmul(h_fc1, W_fc2) + b_fc2)

cross_entropy = -tf.reduce_sum(y_ * tf.log(y_conv))
train_step = tf.train.GradientDescentOptimizer(5e-5).minimize(cross_entropy)
correct_prediction = tf.equal(tf.argmax(y_conv, 1), tf.argmax(y_, 1))
accuracy = tf.reduce_mean(tf.cast(correct_prediction, tf.float32))

with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for i in range(300):
        idx = np.random.randint(0, len(images), 50)
        _, loss, acc = sess.run([train_step, cross_entropy, accuracy], feed_dict={x: images[idx], y_: onehot[idx]})
        if i % 50 == 0 or not np.isfinite(loss):
            print("step %d, loss %g, training accuracy %g" % (i, loss, acc))
        if not np.isfinite(loss):
            print("loss became NaN at step %d" % i)
            break
