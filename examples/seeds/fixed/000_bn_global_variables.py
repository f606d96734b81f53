"""Seed 000, fixed: gradients are taken w.r.t. TRAINABLE_VARIABLES and the leftover Keras BatchNormalization line is removed."""
import numpy as np
import tensorflow as tf

np.random.seed(0)
tf.set_random_seed(0)


class ImitationActor(object):
    def __init__(self, s_dim=4, a_dim=2, hidden=185, lr_i=1e-3, momentum=0.9, dropout_rate=0.1):
        self.lr_i = lr_i
        self.momentum = momentum
        self.S = tf.placeholder(tf.float32, [None, s_dim], name='state')
        self.A_I = tf.placeholder(tf.float32, [None, a_dim], name='expert_action')
        initializer_w = tf.glorot_uniform_initializer()
        initializer_b = tf.constant_initializer(0.1)

        with tf.variable_scope('actor_imitation'):
            layer_1 = self._layer(self.S, 'layer_1', 'weight_actor_layer1', 'bias_actor_layer1',
                                  'normalizer_actor_layer1', s_dim, hidden,
                                  initializer_w, initializer_b, True, dropout_rate)
            with tf.variable_scope('action'):
                w_action = tf.get_variable('weight_actor_action', [hidden, a_dim], initializer=initializer_w)
                self.a = tf.matmul(layer_1, w_action)

        self.e_params = tf.get_collection(tf.GraphKeys.TRAINABLE_VARIABLES, scope='actor_imitation')
        self.loss_imitation = tf.reduce_mean(tf.squared_difference(self.a, self.A_I))
        with tf.variable_scope('imitation_train'):
            update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
            with tf.control_dependencies(update_ops):
                self.opt_i = tf.train.MomentumOptimizer(self.lr_i, self.momentum)
                self.i_grads = tf.gradients(ys=self.loss_imitation, xs=self.e_params, grad_ys=None)
                self.train_imitation = self.opt_i.apply_gradients(zip(self.i_grads, self.e_params))

    def _layer(self, layer_input, layer_scope, weight_scope, bias_scope, layer_normalizer_scope,
               layer_input_dim, hidden_neuro_dim, initializer_w, initializer_b, trainable, dropout_rate):
        with tf.variable_scope(layer_scope):
            w_collection = tf.get_variable(weight_scope, [layer_input_dim, hidden_neuro_dim], initializer=initializer_w, trainable=trainable)
            b_collection = tf.get_variable(bias_scope, [1, hidden_neuro_dim], initializer=initializer_b, trainable=trainable)
            layer_output_0 = tf.matmul(layer_input, w_collection) + b_collection
            # batch_normalization=tf.keras.layers.BatchNormalization(name=layer_normalizer_scope)
            # layer_output_normalization=batch_normalization(layer_output_0,training=True)
            # tf.add_to_collection(tf.GraphKeys.UPDATE_OPS, batch_normalization.updates)
            layer_output_normalization = tf.layers.batch_normalization(layer_output_0, name=layer_normalizer_scope, training=True)
            layer_output = tf.nn.leaky_relu(layer_output_normalization)
            layer_output_dropout = tf.nn.dropout(layer_output, rate=dropout_rate)
            return layer_output_dropout


actor = ImitationActor()
print('self.i_grads:', actor.i_grads)
print('i_grads length:', len(actor.i_grads))
print('self.e_params:', actor.e_params)
print('e_params length:', len(actor.e_params))

true_w = np.random.randn(4, 2).astype(np.float32)
with tf.Session() as sess:
    sess.run(tf.global_variables_initializer())
    for step in range(1000):
        s = np.random.randn(32, 4).astype(np.float32)
        _, loss = sess.run([actor.train_imitation, actor.loss_imitation],
                           feed_dict={actor.S: s, actor.A_I: np.tanh(s.dot(true_w))})
        if step % 200 == 0:
            print(step, loss)
