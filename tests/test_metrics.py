"""Held-out metrics against rankings worked out by hand."""
import numpy as np
import pytest

import metrics


def test_ranks_count_strictly_higher_scores_and_skip_excluded_columns():
    scores = np.array([[0.9, 0.1, 0.5, 0.7],
                       [0.2, 0.8, 0.3, 0.1]])
    assert metrics.ranks_of(scores, np.array([2, 1])).tolist() == [2, 0]
    assert metrics.ranks_of(scores, np.array([2, 1]), excluded=[0]).tolist() == [1, 0]


def test_an_excluded_truth_ranks_last_however_high_it_scores():
    scores = np.array([[0.9, 0.1, 0.5, 0.7],
                       [0.2, 0.8, 0.3, 0.1]])
    assert metrics.ranks_of(scores, np.array([0, 1]), excluded=[0]).tolist() == [4, 0]


def test_ranking_metrics_by_hand():
    # ranks 0, 2, 4 are inside the top 5, rank 7 is not
    got = metrics.ranking_metrics([0, 2, 4, 7])
    assert got["HR@5"] == pytest.approx(3 / 4)
    assert got["MRR@5"] == pytest.approx((1 + 1 / 3 + 1 / 5) / 4)
    assert got["NDCG@5"] == pytest.approx((1 + 1 / np.log2(4) + 1 / np.log2(6)) / 4)


def test_classification_accuracy_is_argmax_over_all_classes():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.4, 0.1], [0.3, 0.3, 0.4]])
    assert metrics.classification_metrics(scores, np.array([1, 1, 2]), seed=0)["accuracy"] == pytest.approx(2 / 3)


def test_pairwise_accuracy_compares_the_truth_with_one_other_label():
    # row 0: truth 0 beats label 1 but loses to label 2; with 2 classes it equals accuracy
    scores = np.array([[0.5, 0.1, 0.9]] * 400)
    got = metrics.classification_metrics(scores, np.zeros(400, int), seed=0)["pairwise_accuracy"]
    assert 0.4 < got < 0.6
    two = np.array([[0.2, 0.8], [0.9, 0.1], [0.6, 0.4]])
    both = metrics.classification_metrics(two, np.array([0, 0, 1]), seed=3)
    assert both["pairwise_accuracy"] == both["accuracy"] == pytest.approx(1 / 3)


def test_score_hash_changes_with_a_single_bit():
    scores = np.linspace(0, 1, 12, dtype="float32").reshape(3, 4)
    a, b = metrics.ScoreHasher(), metrics.ScoreHasher()
    a.update(scores)
    flipped = scores.copy()
    flipped.view("uint32")[1, 2] ^= 1
    b.update(flipped)
    assert a.hexdigest() != b.hexdigest()


def test_backward_transfer_per_metric_and_the_largest_drop_on_a_hand_made_matrix():
    series = {1: [0.50, 0.40, 0.45, 0.48],  # own, then after stages 2, 3, 4
              2: [0.30, 0.32, 0.29],
              3: [0.70, 0.71],
              4: [0.60]}  # the last task: no later stage
    found = metrics.forgetting(series, lambda task: "accuracy" if task == 3 else "HR@5")
    assert found["bwt"] == pytest.approx({"HR@5": ((0.48 - 0.50) + (0.29 - 0.30)) / 2, "accuracy": 0.71 - 0.70})
    assert found["mean_forgetting"] == pytest.approx({"HR@5": ((0.50 - 0.48) + (0.32 - 0.29)) / 2, "accuracy": -0.01})
    assert found["largest_drop"] == pytest.approx({1: 0.10, 2: 0.01, 3: -0.01})  # T1's is at stage 2, not the last


def test_chaudhrys_forgetting_and_the_largest_drop_differ_in_sign_on_a_hand_made_matrix():
    # T2 rose after the next stage, then fell back above its own score (TERACON's ML-1M T2, seed 0)
    series = {2: [0.0688, 0.0740, 0.0714], 3: [0.70, 0.60, 0.65]}
    found = metrics.forgetting(series, lambda task: "HR@5")
    assert found["largest_drop"][2] == pytest.approx(-0.0026)  # never below its own
    assert found["forgetting"][2] == pytest.approx(+0.0026)  # below its best before the last stage
    assert found["largest_drop"][3] == pytest.approx(0.10) and found["forgetting"][3] == pytest.approx(0.05)


def test_forgetting_without_a_later_stage_has_no_backward_transfer():
    found = metrics.forgetting({1: [0.5]}, lambda task: "HR@5")
    assert found == {"bwt": {}, "mean_forgetting": {}, "largest_drop": {}, "forgetting": {}}
