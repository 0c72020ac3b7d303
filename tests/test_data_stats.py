"""tools/data_stats.py: the size and density figures docs/your-data.md compares data sets by."""
import collections

import numpy as np
import pytest

import data_loader
import tasks
from tools import data_stats

T1_LINES = [f"i{u % 7},i{u % 3},i{u % 11},i{u}" for u in range(40)]  # i0..i39: many rare items
GENDER_LINES = [f"i{u % 7},i{u % 3},i{u % 11},,{1 + (u % 4 == 0)}" for u in range(40)]


@pytest.fixture
def data_dir(tmp_path):
    (tmp_path / tasks.task(1).file).write_text("\n".join(T1_LINES) + "\n")
    (tmp_path / tasks.task(4).file).write_text("\n".join(GENDER_LINES) + "\n")
    return tmp_path


def test_t1_counts_follow_the_training_users_tokens(data_dir):
    found = data_stats.data_stats(data_dir, valid=0.0, ks=())["next_item"]
    train, _ = data_loader.split(len(T1_LINES), 10, 0.2, "t1")  # the split every stage uses
    counts = collections.Counter(token for row in train for token in T1_LINES[row].split(","))
    seen = np.array(list(counts.values()))
    assert found["training_users"] == len(train) == 32 and found["items_per_user"] == 4
    assert found["items_in_training"] == len(counts)
    assert found["items_seen_once"] == pytest.approx(np.mean(seen == 1))
    assert found["items_seen_under_5"] == pytest.approx(np.mean(seen < 5))
    assert found["interactions_on_items_seen_under_5"] == pytest.approx(seen[seen < 5].sum() / seen.sum())


def test_k_core_entries_shrink_with_k_and_say_when_nothing_is_left(data_dir):
    found = data_stats.data_stats(data_dir, valid=0.0, ks=(2, 3, 40))["next_item"]
    for measure in ("items", "training_users"):
        assert found["k2"][measure] >= found["k3"][measure]
    assert found["k3"]["items"] < found["items_in_training"]
    assert found["k40"] == "keeps no training user"


def test_k_core_entries_count_the_held_out_items_turned_unknown(data_dir):
    found = data_stats.data_stats(data_dir, valid=0.0, ks=(2,))["next_item"]["k2"]
    train, test = data_loader.split(len(T1_LINES), 10, 0.2, "t1")
    counts = collections.Counter(token for row in train for token in T1_LINES[row].split(","))
    rare = lambda token: counts[token] < 2  # every training user keeps i{u % 7} and i{u % 3}: none drops out
    assert found["held_out_targets_unknown"] == pytest.approx(np.mean([rare(T1_LINES[r].split(",")[-1]) for r in test]))
    inputs = [token for r in test for token in T1_LINES[r].split(",")[:-1]]
    assert found["held_out_inputs_unknown"] == pytest.approx(np.mean([rare(token) for token in inputs]))
    assert found["held_out_targets_unknown"] > 0


def test_classification_reports_its_majority_share_and_missing_tasks_are_left_out(data_dir):
    found = data_stats.data_stats(data_dir, valid=0.0, ks=())
    assert set(found) == {"next_item", "gender"}
    train, _ = data_loader.split(len(GENDER_LINES), 10, 0.2, "gender")
    labels = collections.Counter(GENDER_LINES[row].split(",,")[1] for row in train)
    assert found["gender"] == {"training_examples": 32, "targets": 2,
                               "majority_share": pytest.approx(max(labels.values()) / 32)}


def test_bad_k_exits_with_one_line_naming_it(data_dir, capsys):
    with pytest.raises(SystemExit) as stopped:
        data_stats.main([f"--data_dir={data_dir}", "--k=5,x"])
    assert stopped.value.code == 2 and capsys.readouterr().err.strip() == \
        "error: --k=5,x: expected positive integers separated by commas"


def test_baselines_score_the_held_out_split(data_dir):
    found = data_stats.data_stats(data_dir, valid=0.0, ks=(), baselines=True)["gender"]
    train, test = data_loader.split(len(GENDER_LINES), 10, 0.2, "gender")
    label = lambda row: GENDER_LINES[row].split(",,")[1]
    majority = collections.Counter(label(row) for row in train).most_common(1)[0][0]
    assert found["majority accuracy"] == pytest.approx(np.mean([label(row) == majority for row in test]))
    assert 0 <= found["logistic regression accuracy"] <= 1
