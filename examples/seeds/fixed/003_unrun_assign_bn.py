"""Seed 003, fixed: the train_mean/train_var assign ops are created inside the training branch and the training-mode output runs under tf.control_dependencies on them, so the population statistics are updated in training mode only."""
import numpy as np
import tensorflow as tf

np.random.seed(0)
tf.set_random_seed(0)
decay = 0.99


class batch_norm:
    def __init__(self,inputs,size,is_training,sess,bn_param=None):

        self.sess = sess
        self.scale = tf.Variable(tf.random_uniform([size],1.,1.))
        self.beta = tf.Variable(tf.random_uniform([size],0.,0.))
        self.pop_mean = tf.Variable(tf.random_uniform([size],0.,0.)) #used when in testing mode
        self.pop_var = tf.Variable(tf.random_uniform([size],1.,1.))  #used when in testing mode
        self.batch_mean, self.batch_var = tf.nn.moments(inputs,[0])

        def training():
            train_mean = tf.assign(self.pop_mean,self.pop_mean * decay + self.batch_mean * (1 - decay))
            train_var = tf.assign(self.pop_var,self.pop_var * decay + self.batch_var * (1 - decay))
            with tf.control_dependencies([train_mean, train_var]):
                return (inputs - self.batch_mean) / tf.sqrt(self.batch_var + 0.0000001) * self.scale + self.beta

        def testing():
            return (inputs - self.pop_mean) / tf.sqrt(self.pop_var + 0.0000001) * self.scale + self.beta

        self.output = tf.cond(is_training, training, testing)


sess = tf.Session()
x = tf.placeholder(tf.float32, [None, 1])
y = tf.placeholder(tf.float32, [None, 1])
is_training = tf.placeholder(tf.bool, shape=())
w = tf.Variable(tf.random_normal([1, 1]))
bn = batch_norm(tf.matmul(x, w), 1, is_training, sess)
loss = tf.reduce_mean(tf.square(bn.output - y))
train_step = tf.train.GradientDescentOptimizer(0.1).minimize(loss)

sess.run(tf.global_variables_initializer())
print('pop_mean before:', sess.run(bn.pop_mean))
for i in range(500):
    xs = np.random.randn(32, 1) * 2.0 + 3.0
    sess.run(train_step, feed_dict={x: xs, y: 0.5 * xs - 1.0, is_training: True})
print('pop_mean after: ', sess.run(bn.pop_mean))
print('pop_var after:  ', sess.run(bn.pop_var))
sess.close()
