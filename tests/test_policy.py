"""The policy-gradient machinery shared by RDRSR and AdaSplit (`tfrec_dyn.layers.policy`)."""

import numpy as np
import tensorflow as tf
import tf_keras as keras

from layer_harness import run_layer_test
from tfrec_dyn.layers import CategoricalPolicy, discounted_returns, orthogonality_reward, reinforce_loss


def test_categorical_policy_layer(tmp_path):
    allowed = tf.constant([[True, True, False], [True, False, False]])
    run_layer_test(CategoricalPolicy, {"num_actions": 3}, [tf.random.normal([2, 8]), allowed],
                   [(2,), (2,), (2, 3)], tmp_path)


def test_policy_never_takes_a_disallowed_action():
    policy = CategoricalPolicy(4)
    state = tf.random.normal([500, 8])
    allowed = tf.constant(np.random.default_rng(0).random((500, 4)) < 0.5) | tf.one_hot([0] * 500, 4, on_value=True,
                                                                                      off_value=False)
    for training in (True, False):
        action, log_prob, log_probs = policy(state, allowed, training=training)
        assert np.all(tf.gather(allowed, action, batch_dims=1).numpy())
        np.testing.assert_allclose(tf.reduce_sum(tf.exp(log_probs), -1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(log_prob, tf.gather(log_probs, action, batch_dims=1))


def test_policy_gradient_moves_probability_toward_the_rewarded_action():
    """Toy bandit: action 2 pays 1, the others 0. REINFORCE with a mean baseline
    must make action 2 the most likely by far."""
    tf.random.set_seed(0)
    policy = CategoricalPolicy(3)
    state, allowed = tf.ones([64, 4]), tf.ones([64, 3], tf.bool)
    policy(state, allowed)
    optimizer = keras.optimizers.SGD(0.5)
    before = tf.exp(policy(state, allowed)[2])[0, 2].numpy()
    for _ in range(60):
        with tf.GradientTape() as tape:
            action, log_prob, _ = policy(state, allowed, training=True)
            reward = tf.cast(tf.equal(action, 2), tf.float32)
            loss = reinforce_loss(log_prob, reward, baseline=tf.reduce_mean(reward))
        optimizer.apply_gradients(zip(tape.gradient(loss, policy.trainable_weights), policy.trainable_weights))
    after = tf.exp(policy(state, allowed)[2])[0, 2].numpy()
    assert before < 0.6 and after > 0.9, (before, after)


def test_reinforce_loss_and_discounted_returns_by_hand():
    log_probs = tf.math.log([[0.5, 0.25, 1.0], [0.1, 1.0, 1.0]])
    mask = tf.constant([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    # −mean( (log .5 + log .25) · (2 − 1), log .1 · (−1 − 1) ): log 1 = 0 at the third step.
    expected = -np.mean([(np.log(0.5) + np.log(0.25)) * 1.0, np.log(0.1) * -2.0])
    got = reinforce_loss(log_probs, tf.constant([2.0, -1.0]), mask=mask, baseline=tf.constant([1.0, 1.0]))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    returns = discounted_returns(tf.constant([[1.0, 2.0, 4.0], [3.0, 5.0, 7.0]]), 0.5,
                                 mask=tf.constant([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0]]))
    np.testing.assert_allclose(returns, [[1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4, 4], [0, 5 + 0.5 * 7, 7]])


def test_rewards_are_constants_for_the_gradient():
    rewards = tf.Variable([1.0, 2.0])
    with tf.GradientTape() as tape:
        loss = reinforce_loss(tf.math.log([0.5, 0.5]), rewards * 3.0)
    assert tape.gradient(loss, rewards) is None


def test_orthogonality_reward_by_hand():
    orthogonal = tf.constant([[[1.0, 0.0], [0.0, 2.0]]])
    np.testing.assert_allclose(orthogonality_reward(orthogonal, [[1.0, 1.0]]), [0.0])  # its maximum
    interests = tf.constant([[[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]])
    # pairs: |1·1 + 0·1| = 1, |0| = 0, |1·0 + 1·2| = 2  -> −(1 + 0 + 2) / 3
    np.testing.assert_allclose(orthogonality_reward(interests, [[1.0, 1.0, 1.0]]), [-1.0])
    # An inactive interest takes no part; a single interest has no pair.
    np.testing.assert_allclose(orthogonality_reward(interests, [[1.0, 1.0, 0.0]]), [-1.0])
    np.testing.assert_allclose(orthogonality_reward(interests, [[1.0, 0.0, 0.0]]), [0.0])
