"""Seed 004, fixed: the model is called with training=True inside the tape and gradients are taken and applied w.r.t. model.trainable_variables."""
import numpy as np
import tensorflow as tf

np.random.seed(0)

model = tf.keras.Sequential([
                     tf.keras.layers.InputLayer(input_shape=(1,)),
                     tf.keras.layers.BatchNormalization()
])
opt = tf.keras.optimizers.Adam(0.5)

# model training... we want the output values to be close to 150
for i in range(1000):
  x = np.random.randint(100, 110, 10).astype(np.float32)
  with tf.GradientTape() as tape:
    y = model(np.expand_dims(x, axis=1), training=True)
    loss = tf.reduce_mean(tf.square(y - 150))
  grads = tape.gradient(loss, model.trainable_variables)
  opt.apply_gradients(zip(grads, model.trainable_variables))

x = np.random.randint(200, 210, 100).astype(np.float32)
print(model(np.expand_dims(x, axis=1)))
