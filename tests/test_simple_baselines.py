"""The strong simple baselines give known answers on tiny hand-made data."""
import numpy as np
import pytest

import data_loader as dl
import metrics
import simple_baselines


def write_lines(path, train_lines, test_lines):
    """A file whose held-out lines (split seed 10, 20%) are exactly `test_lines`, in order."""
    n = len(train_lines) + len(test_lines)
    train, test = dl.split(n, 10, 0.2, path)
    lines = [None] * n
    for index, line in zip(train, train_lines):
        lines[index] = line
    for index, line in zip(test, test_lines):
        lines[index] = line
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def t1(tmp_path):
    # training: a->b, b->c five times; a->c, c->d three times. Popularity: a 8, c 8, b 5, d 3.
    train = ["0,0,0,a,b,c"] * 5 + ["0,0,0,a,c,d"] * 3
    test = ["0,0,0,0,a,b", "0,0,0,0,c,a"]  # last input a, truth b; last input c, truth a
    path = write_lines(tmp_path / "t1.csv", train, test)
    return dl.T1Task(dl.read_t1(path), 10, 0.2, path)


def transfer_task(tmp_path, t1, kind, train, test):
    path = write_lines(tmp_path / f"{kind}.csv", train, test)
    return dl.TransferTask(dl.read_transfer(path, t1.vocab), kind, 10, 0.2, path)


def test_popularity_ranks_items_by_training_count_with_ties_for_the_truth(t1):
    # truth b: a and c are more frequent (rank 2); truth a: only c ties with it (rank 0)
    assert simple_baselines.popularity(t1) == metrics.ranking_metrics([2, 0])


def test_k_core_held_out_targets_turned_unk_are_misses_for_the_baselines(tmp_path):
    # d occurs once in training: at k=2 it becomes <unk>, the most frequent token, and the held-out
    # truth d can no longer be recommended by popularity or the Markov chain
    train = ["0,a,b,c,d"] + ["0,0,a,b,c"] * 7
    path = write_lines(tmp_path / "t1.csv", train, ["0,0,a,b,d", "0,0,0,a,b"])
    data = dl.T1Task(dl.read_t1(path), 10, 0.2, path, min_item_count=2)
    assert data.test_ids[0, -1] == dl.UNK
    assert simple_baselines.popularity(data)["HR@5"] == simple_baselines.markov_chain(data)["HR@5"] == 0.5


def test_markov_chain_ranks_what_followed_the_last_item(t1):
    # after a: b (5) before c (3): rank 0. After c: d (3), then a by popularity, tied with c: rank 1
    assert simple_baselines.markov_chain(t1) == metrics.ranking_metrics([0, 1])


def test_cooccurrence_sums_target_counts_over_the_source_items(tmp_path, t1):
    source_a, source_b, source_ab = "0,0,0,0,0,a", "0,0,0,0,0,b", "0,0,0,0,a,b"
    train = [f"{source_a},,t1"] * 4 + [f"{source_b},,t2"] * 3 + [f"{source_ab},,t3"]
    test = [f"{source_ab},,t3", f"{source_b},,t2"]
    task = transfer_task(tmp_path, t1, "item", train, test)
    # a and b: t1 4, t2 3, t3 1 + 1 = 2: rank 2. b alone: t2 3 above t3 1: rank 0
    assert simple_baselines.cooccurrence(task) == metrics.ranking_metrics([2, 0])


def test_majority_label(tmp_path, t1):
    train = ["0,0,0,0,0,a,,m"] * 5 + ["0,0,0,0,0,b,,f"] * 3
    task = transfer_task(tmp_path, t1, "class", train, ["0,0,0,0,0,b,,f", "0,0,0,0,0,a,,m"])
    assert simple_baselines.popularity(task) == {"accuracy": 0.5}


def test_logistic_regression_learns_a_label_carried_by_one_item(tmp_path, t1):
    train = ["0,0,0,c,d,a,,m"] * 20 + ["0,0,0,c,d,b,,f"] * 12
    test = ["0,0,0,0,c,b,,f"] * 4 + ["0,0,0,0,d,a,,m"] * 4
    task = transfer_task(tmp_path, t1, "class", train, test)
    result = simple_baselines.logistic_regression(task)
    assert result["accuracy"] == 1.0 and result["C"] in simple_baselines.C_GRID


def test_baselines_fit_only_the_examples_a_stage_trains_on(tmp_path):
    path = tmp_path / "t1.csv"
    path.write_text("".join(f"0,0,x{u % 3},y{u % 5},z{u % 7}\n" for u in range(50)))
    whole = dl.T1Task(dl.read_t1(path), 10, 0.2, path)
    with_valid = dl.T1Task(dl.read_t1(path), 10, 0.2, path, valid=0.25)
    assert with_valid.n_train == 30 and with_valid.n_valid == 10 and with_valid.n_test == whole.n_test == 10
    np.testing.assert_array_equal(with_valid.test_ids, whole.test_ids)
    assert with_valid.train_target_counts().sum() == 30 * 5
