"""Seed 002, fixed: gradients of new_state are taken only w.r.t. the variables that feed it (the layer_cell and lstm_model scopes), so none is None."""
import numpy as np
import tensorflow as tf

mseed = 123
tf.set_random_seed(mseed)
np.random.seed(mseed)
kernel_initializer = tf.glorot_normal_initializer(seed=mseed)

# Graph Hyperparameters
cell_size = 64
num_classes = 2
m_dtype = tf.float32
num_features = 30

inputs_train_ph = tf.placeholder(dtype=m_dtype, shape=[None, 75, num_features], name="inputs_train_ph")
inputs_devel_ph = tf.placeholder(dtype=m_dtype, shape=[None, 75, num_features], name="inputs_devel_ph")

labels_train_ph = tf.placeholder(dtype=m_dtype, shape=[None, 75, num_classes], name="labels_train_ph")
labels_devel_ph = tf.placeholder(dtype=m_dtype, shape=[None, 75, num_classes], name="labels_devel_ph")

def return_inputs_train(): return inputs_train_ph
def return_inputs_devel(): return inputs_devel_ph
def return_labels_train(): return labels_train_ph
def return_labels_devel(): return labels_devel_ph

phase_train = tf.placeholder(tf.bool, shape=())
dropout = tf.placeholder(dtype=m_dtype, shape=())
initial_state = tf.placeholder(shape=[None, cell_size], dtype=m_dtype, name="initial_state")

inputs = tf.cond(phase_train, return_inputs_train, return_inputs_devel)
labels = tf.cond(phase_train, return_labels_train, return_labels_devel)

# Graph
def model(inputs):
    used = tf.sign(tf.reduce_max(tf.abs(inputs), 2))

    length = tf.reduce_sum(used, 1)
    length = tf.cast(length, tf.int32)

    with tf.variable_scope('layer_cell'):
        inputs = tf.layers.conv1d(inputs, filters=100, kernel_size=3, padding="same",
                                  kernel_initializer=tf.glorot_normal_initializer(seed=mseed))
        inputs = tf.layers.batch_normalization(inputs, training=phase_train, name="bn")
        inputs = tf.nn.relu(inputs)

    with tf.variable_scope('lstm_model'):

        cell = tf.nn.rnn_cell.GRUCell(cell_size, kernel_initializer=kernel_initializer)
        cell = tf.nn.rnn_cell.DropoutWrapper(cell, input_keep_prob=1.0 - dropout, state_keep_prob=1.0 - dropout)
        output, new_state = tf.nn.dynamic_rnn(cell, inputs, dtype=m_dtype, sequence_length=length,
                                              initial_state=initial_state)

    with tf.variable_scope("output"):
        output = tf.reshape(output, shape=[-1, cell_size])
        output = tf.layers.dense(output, units=num_classes,
                                 kernel_initializer=kernel_initializer)

        output = tf.reshape(output, shape=[5, -1, num_classes])
        used = tf.stack((used, used), 2)
        used = tf.reshape(used, shape=(5, -1, num_classes))

        output = output * used

    return output, new_state


output, new_state = model(inputs)

state_vars = (tf.get_collection(tf.GraphKeys.TRAINABLE_VARIABLES, scope='layer_cell') +
              tf.get_collection(tf.GraphKeys.TRAINABLE_VARIABLES, scope='lstm_model'))
grads_new_state_wrt_vars = tf.gradients(new_state, state_vars)
for g in grads_new_state_wrt_vars:
    print('**', g)

init_op = tf.global_variables_initializer()

batch_size = 5
feed = {inputs_train_ph: np.random.randn(batch_size, 75, num_features),
        inputs_devel_ph: np.random.randn(batch_size, 75, num_features),
        labels_train_ph: np.random.randn(batch_size, 75, num_classes),
        labels_devel_ph: np.random.randn(batch_size, 75, num_classes),
        phase_train: True, dropout: 0.0,
        initial_state: np.zeros((batch_size, cell_size))}

pairs = [(v, g) for v, g in zip(state_vars, grads_new_state_wrt_vars) if g is not None]

with tf.Session() as sess:
    sess.run(init_op)
    values = sess.run([g for v, g in pairs], feed_dict=feed)
    for (v, g), value in zip(pairs, values):
        print(v.name, value.shape, np.linalg.norm(value))
