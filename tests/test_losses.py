"""Losses against brute-force references, and the negative samplers they rely on."""
import math

import numpy as np
import pytest
from keras import ops

import data_loader
import losses


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

