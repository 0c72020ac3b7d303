"""Ownership: keep counts, disjointness, magnitude order, invariants and persistence."""
import math

import numpy as np
import pytest

import pruning

RATIOS = [0.7] * 6
RELEASE_KERNEL = (3, 256, 256)


@pytest.fixture
def kernel():
    return np.random.default_rng(0).normal(size=RELEASE_KERNEL).astype("float32")


def prune_all(kernel, ratios):
    owner = np.zeros(kernel.shape, "int8")
    for task in range(1, len(ratios) + 1):
        owner = pruning.prune(kernel, owner, task, ratios)
    return owner


def test_t1_keeps_exactly_30_percent_of_a_release_kernel(kernel):
    owner = pruning.prune(kernel, np.zeros(kernel.shape, "int8"), 1, RATIOS)
    assert (owner == 1).sum() == math.floor(0.3 * kernel.size) == 58982


def test_shares_follow_the_release_schedule():
    shares = [float(pruning.keep_share(RATIOS, k)) for k in range(1, 7)]
    np.testing.assert_allclose(shares, [0.3, 0.21, 0.147, 0.1029, 0.07203, 0.050421])


def test_every_task_keeps_floor_of_its_share(kernel):
    counts = np.bincount(prune_all(kernel, RATIOS).ravel(), minlength=7)
    for task in range(1, 7):
        assert counts[task] == pruning.keep_count(RATIOS, task, kernel.size)


def test_later_tasks_never_take_earlier_weights(kernel):
    first = pruning.prune(kernel, np.zeros(kernel.shape, "int8"), 1, RATIOS)
    final = prune_all(kernel, RATIOS)
    np.testing.assert_array_equal(final == 1, first == 1)


def test_task_takes_the_largest_free_magnitudes(kernel):
    owner = pruning.prune(kernel, np.zeros(kernel.shape, "int8"), 1, RATIOS)
    owner = pruning.prune(kernel, owner, 2, RATIOS)
    magnitude = np.abs(kernel)
    assert magnitude[owner == 2].min() >= magnitude[owner == 0].max()


def test_zero_weights_tie_without_touching_owned_positions():
    kernel = np.zeros((4, 5), "float32")  # all ties at zero: the release's latent bug
    owner = pruning.prune(kernel, np.zeros(kernel.shape, "int8"), 1, [0.5, 0.5])
    owner = pruning.prune(kernel, owner, 2, [0.5, 0.5])
    assert (owner == 1).sum() == 10 and (owner == 2).sum() == 5


def test_check_rejects_a_wrong_count(kernel):
    owner = prune_all(kernel, RATIOS)
    owner.ravel()[np.flatnonzero(owner.ravel() == 0)[0]] = 3
    with pytest.raises(pruning.OwnershipError, match="task 3 owns"):
        pruning.check({"k": owner}, RATIOS)


def test_pruning_twice_for_one_task_is_refused(kernel):
    owner = pruning.prune(kernel, np.zeros(kernel.shape, "int8"), 1, RATIOS)
    with pytest.raises(pruning.OwnershipError, match="already owns"):
        pruning.prune(kernel, owner, 1, RATIOS)


def test_save_and_load_round_trip(kernel, tmp_path):
    owners = {"block_0/conv1": prune_all(kernel, RATIOS[:2])}
    pruning.save(tmp_path, owners, RATIOS[:2])
    loaded, ratios = pruning.load(tmp_path)
    assert ratios == RATIOS[:2]
    np.testing.assert_array_equal(loaded["block_0/conv1"], owners["block_0/conv1"])


def test_report_lists_each_task_and_the_free_share(kernel):
    text = pruning.report({"k": prune_all(kernel, RATIOS[:2])}, RATIOS[:2])
    assert "T1" in text and "30.0000%" in text and "T2" in text and "21.0000%" in text and "free" in text
