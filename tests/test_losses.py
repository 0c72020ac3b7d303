"""Losses against brute-force references, and the negative samplers they rely on."""
import math

import keras
import numpy as np
import pytest
from keras import ops

import data_loader
import losses
import metrics
import trainer
from nextitnet import ConureModel, NextItemHead


def expected_count(ids, num_tries, n_classes):
    p = (np.log(ids + 2.0) - np.log(ids + 1.0)) / math.log(n_classes + 1.0)
    return 1.0 - (1.0 - p) ** num_tries


def brute_force_sampled_softmax(hidden, labels, weight, bias, sampled, num_tries):
    n_classes = len(weight)
    out = []
    for h, y in zip(hidden, labels):
        true = h @ weight[y] + bias[y] - np.log(expected_count(y, num_tries, n_classes))
        terms = [np.exp(true)]
        for s in sampled:
            if s != y:  # accidental hit: removed
                terms.append(np.exp(h @ weight[s] + bias[s] - np.log(expected_count(s, num_tries, n_classes))))
        out.append(np.log(np.sum(terms)) - true)
    return np.array(out)


def test_sampled_softmax_matches_brute_force_with_accidental_hits():
    rng = np.random.default_rng(0)
    hidden = rng.normal(size=(6, 4))
    weight, bias = rng.normal(size=(12, 4)), rng.normal(size=12)
    labels = np.array([0, 3, 5, 5, 11, 2])
    sampled = np.array([5, 0, 7, 9])  # hits for labels 0 and 5
    got = losses.sampled_softmax(hidden.astype("float32"), labels, weight.astype("float32"),
                                 bias.astype("float32"), sampled, np.float32(9.0))
    want = brute_force_sampled_softmax(hidden, labels, weight, bias, sampled, 9.0)
    np.testing.assert_allclose(ops.convert_to_numpy(got), want, rtol=1e-5)


def test_split_sums_give_the_sampled_softmax_and_its_gradients_of_the_concatenated_logits():
    rng = np.random.default_rng(1)
    hidden = keras.Variable(rng.normal(size=(6, 4)).astype("float32"))
    weight = keras.Variable(rng.normal(size=(12, 4)).astype("float32"))
    bias = keras.Variable(rng.normal(size=12).astype("float32"))
    labels, sampled = np.array([0, 3, 5, 5, 11, 2]), np.array([5, 0, 7, 9])  # hits for labels 0 and 5
    variables = [hidden, weight, bias]

    def loss(sums):
        return lambda: ops.mean(losses.sampled_softmax(hidden, labels, weight, bias, sampled, np.float32(9.0), sums))

    concat, split = loss_and_grads(loss("concat"), variables), loss_and_grads(loss("split"), variables)
    assert split[0] == pytest.approx(concat[0], rel=1e-6)
    for got, want in zip(split[1], concat[1]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_full_softmax_next_item_loss_is_mean_cross_entropy_over_counted_positions():
    rng = np.random.default_rng(1)
    hidden = rng.normal(size=(2, 3, 4)).astype("float32")
    weight, bias = rng.normal(size=(7, 4)).astype("float32"), rng.normal(size=7).astype("float32")
    labels = np.array([[1, 2, 0], [6, 0, 0]])
    weights = (labels != 0).astype("float32")
    logits = hidden.reshape(-1, 4) @ weight.T + bias
    ce = np.log(np.exp(logits).sum(1)) - logits[np.arange(6), labels.ravel()]
    got = losses.next_item_loss(hidden, {"labels": labels, "weights": weights}, weight, bias)
    np.testing.assert_allclose(float(got), (ce * weights.ravel()).sum() / weights.sum(), rtol=1e-5)


def test_bpr_and_logistic_losses():
    pos, neg = np.array([2.0, -1.0]), np.array([0.5, 0.5])
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    assert float(losses.bpr(pos, neg)) == pytest.approx(-np.mean(np.log(sig(pos - neg))), rel=1e-6)
    assert float(losses.logistic(pos, neg)) == pytest.approx(
        -np.mean(np.log(sig(pos)) + np.log(1 - sig(neg))), rel=1e-6)


def test_target_loss_uses_rows_of_target_and_negative():
    user = np.array([[1.0, 0.0], [0.0, 1.0]], "float32")
    table = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], "float32")
    batch = {"target": np.array([2, 0]), "negative": np.array([0, 1])}
    got = float(losses.target_loss(user, batch, table, "item"))
    assert got == pytest.approx(float(losses.bpr(np.array([5.0, 2.0]), np.array([1.0, 4.0]))), rel=1e-6)


def test_log_uniform_sampler_draws_distinct_ids_and_counts_its_tries():
    sampler = data_loader.LogUniformSampler(n_classes=1000, n_sampled=200)
    ids, num_tries = sampler.sample(np.random.default_rng(0))
    assert len(ids) == 200 == len(np.unique(ids)) and ids.min() >= 0 and ids.max() < 1000
    assert num_tries >= 200
    ids_again, tries_again = sampler.sample(np.random.default_rng(0))
    np.testing.assert_array_equal(ids, ids_again)
    assert tries_again == num_tries


def test_log_uniform_sampler_favours_small_ids():
    sampler = data_loader.LogUniformSampler(n_classes=1000, n_sampled=50)
    rng = np.random.default_rng(1)
    hits = np.bincount(np.concatenate([sampler.sample(rng)[0] for _ in range(200)]), minlength=1000)
    assert hits[:10].mean() > 10 * hits[-100:].mean()


def test_popularity_sampler_follows_lambdafm_weights():
    n, rho = 50, 0.3
    sampler = data_loader.PopularitySampler(n, rho)
    draws = np.bincount(sampler.sample(np.random.default_rng(0), 200_000), minlength=n)
    expected = np.exp(-(np.arange(n) + 1) / (rho * n))
    np.testing.assert_allclose(draws / draws.sum(), expected / expected.sum(), atol=0.005)


def test_other_labels_never_repeat_the_truth():
    truth = np.array([0, 1, 2, 2, 1, 0] * 50)
    others = data_loader.other_labels(np.random.default_rng(0), truth, 3)
    assert (others != truth).all() and set(others) == {0, 1, 2}



def loss_and_grads(loss_fn, variables):
    """Loss and gradients of loss_fn() w.r.t. variables, on the current backend."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn()
        return float(loss), [ops.convert_to_numpy(g) for g in tape.gradient(loss, variables)]
    import jax

    def pure(values):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return loss_fn()

    loss, grads = jax.value_and_grad(pure)([v.value for v in variables])
    return float(loss), [np.asarray(g) for g in grads]


@pytest.mark.parametrize("chunk", [4, 7, 23, 64])
def test_item_chunked_softmax_matches_the_plain_one_with_gradients(chunk):
    rng = np.random.default_rng(3)
    hidden = keras.Variable(rng.normal(size=(9, 6)).astype("float32"))
    weight = keras.Variable(rng.normal(size=(23, 6)).astype("float32"))
    bias = keras.Variable(rng.normal(size=23).astype("float32"))
    labels = rng.integers(0, 23, size=9)
    variables = [hidden, weight, bias]
    plain = loss_and_grads(lambda: ops.mean(losses.full_softmax(hidden, labels, weight, bias)), variables)
    chunked = loss_and_grads(lambda: ops.mean(losses.full_softmax(hidden, labels, weight, bias, chunk)), variables)
    assert chunked[0] == pytest.approx(plain[0], rel=1e-5)
    for got, want in zip(chunked[1], plain[1]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_item_chunked_ranking_matches_ranks_from_the_score_matrix():
    keras.utils.set_random_seed(0)
    model = ConureModel(vocab_size=40, channels=8, dilations=(1,), kernel_size=3)
    model.add_head(1, NextItemHead(40))
    tokens = np.random.default_rng(0).integers(3, 40, size=(16, 9)).astype("int32")
    truth = np.random.default_rng(1).integers(3, 40, size=16).astype("int32")
    truth[:2] = 1  # <unk> targets: ranked last on both paths
    scores = trainer.compiled(lambda t: model.task_scores(t, 1), model.variables)(tokens)
    ranks, top, _ = trainer.compiled(lambda t, y: model.task_ranks(t, y, 1, chunk=7, excluded=(0, 1, 2)),
                                     model.variables)(tokens, truth)
    np.testing.assert_array_equal(ranks, metrics.ranks_of(scores, truth, excluded=(0, 1, 2)))
    masked = scores.copy()
    masked[:, :3] = -np.inf
    np.testing.assert_array_equal(top, np.argsort(-masked, axis=1, kind="stable")[:, :5])
