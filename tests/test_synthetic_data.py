"""Tests for synthetic_data.py (`prepare_data.py synthetic`): determinism, TTL format, planted structure."""

from pathlib import Path

import numpy as np
import pytest

import prepare_data
from data_prep import synthetic_data
from data_prep.task_files import SEQ_LEN
from tasks import FILES
from conftest import TTL_SAMPLE, needs_ttl_sample

TASKS = ("T1", "T2", "T3", "T4", "T5", "T6")
LABEL_VOCAB = {"T4": {"1", "2"}, "T5": {str(i) for i in range(1, 9)},
               "T6": {str(i) for i in range(1, 7)}}


def read_lines(path: Path) -> list:
    return path.read_text().splitlines()


def split_line(line: str):
    """(100 source tokens, list of targets or None) of one TTL line."""
    if ",," in line:
        source, targets = line.split(",,")
        return source.split(","), targets.split(",")
    return line.split(","), None


def assert_left_padded_source(tokens: list) -> None:
    assert len(tokens) == SEQ_LEN
    assert all(t.isdigit() for t in tokens)
    nonpad = [t != "0" for t in tokens]
    first = nonpad.index(True)
    assert all(nonpad[first:]), "padding `0` may only appear on the left"


def load_task(out: Path, task: str):
    """Sources as an int matrix and the target lists of one task file."""
    parsed = [split_line(line) for line in read_lines(out / FILES[task])]
    sources = np.array([[int(t) for t in src] for src, _ in parsed])
    return sources, [targets for _, targets in parsed]


def hr_at_5(top5: np.ndarray, truth: np.ndarray) -> float:
    return float((top5 == truth[:, None]).any(axis=1).mean())


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    synthetic_data.write_synthetic(out, users=200, items=100, seed=0)
    return out


@pytest.fixture(scope="module")
def medium_dir(tmp_path_factory):
    """Enough users for the learnability checks, still well under a second."""
    out = tmp_path_factory.mktemp("medium")
    synthetic_data.write_synthetic(out, users=3000, items=1000, seed=1)
    return out


def test_writes_the_six_spec_file_names(small_dir):
    assert sorted(p.name for p in small_dir.iterdir()) == sorted(FILES.values())


def test_same_arguments_give_byte_identical_files(small_dir, tmp_path):
    synthetic_data.write_synthetic(tmp_path, users=200, items=100, seed=0)
    for name in FILES.values():
        assert (tmp_path / name).read_bytes() == (small_dir / name).read_bytes(), name


def test_different_seed_gives_different_files(small_dir, tmp_path):
    synthetic_data.write_synthetic(tmp_path, users=200, items=100, seed=1)
    t1 = FILES["T1"]
    assert (tmp_path / t1).read_bytes() != (small_dir / t1).read_bytes()


def test_lines_end_with_newline_only(small_dir):
    for name in FILES.values():
        data = (small_dir / name).read_bytes()
        assert data.endswith(b"\n") and b"\r" not in data and b"\n\n" not in data, name


def test_t1_lines_are_100_left_padded_tokens(small_dir):
    lines = read_lines(small_dir / FILES["T1"])
    assert len(lines) == 200
    for line in lines:
        tokens, targets = split_line(line)
        assert targets is None
        assert_left_padded_source(tokens)


def test_padding_and_full_length_lines_both_occur(small_dir):
    sources, _ = load_task(small_dir, "T1")
    lengths = (sources > 0).sum(axis=1)
    assert lengths.min() >= synthetic_data.MIN_LEN
    assert (lengths < SEQ_LEN).any() and (lengths == SEQ_LEN).any()


def test_task_lines_are_source_separator_targets(small_dir):
    for task in TASKS[1:]:
        for line in read_lines(small_dir / FILES[task]):
            assert line.count(",,") == 1, task
            tokens, targets = split_line(line)
            assert_left_padded_source(tokens)
            assert all(t.isdigit() and t != "0" for t in targets), task


def test_click_and_like_lines_have_1_to_5_distinct_targets(small_dir):
    for task in ("T2", "T3"):
        _, targets = load_task(small_dir, task)
        assert all(1 <= len(t) <= 5 and len(set(t)) == len(t) for t in targets), task
        assert max(len(t) for t in targets) > 1, task


def test_label_files_have_one_label_from_their_vocabulary(medium_dir):
    for task, vocab in LABEL_VOCAB.items():
        _, targets = load_task(medium_dir, task)
        assert all(len(t) == 1 for t in targets), task
        assert {t[0] for t in targets} == vocab, task


def test_gender_shares_are_close_to_ttl(medium_dir):
    _, targets = load_task(medium_dir, "T4")
    share_1 = np.mean([t[0] == "1" for t in targets])
    assert 0.65 < share_1 < 0.80


def test_task_sources_are_t1_lines_in_t1_order(small_dir):
    t1 = read_lines(small_dir / FILES["T1"])
    for task in TASKS[1:]:
        sources = [line.split(",,")[0] for line in read_lines(small_dir / FILES[task])]
        position = 0
        for source in sources:  # each source must appear at or after the previous match
            position = t1.index(source, position) + 1


def test_task_files_keep_the_expected_user_shares(medium_dir):
    n_users = len(read_lines(medium_dir / FILES["T1"]))
    shares = {task: len(read_lines(medium_dir / FILES[task])) / n_users
              for task in TASKS[1:]}
    assert 0.92 < shares["T2"] < 0.98
    assert 0.15 < shares["T3"] < 0.25
    assert all(shares[t] > 0.98 for t in ("T4", "T5", "T6"))


def test_item_tokens_are_not_numbered_by_popularity(medium_dir):
    sources, _ = load_task(medium_dir, "T1")
    counts = np.bincount(sources.ravel())[1:]
    by_popularity = np.argsort(-counts, kind="stable") + 1
    assert not np.array_equal(by_popularity[:20], np.sort(by_popularity[:20]))
    assert abs(np.corrcoef(np.arange(len(counts)), counts)[0, 1]) < 0.3


def test_next_item_successor_predictor_beats_popularity(medium_dir):
    sources, _ = load_task(medium_dir, "T1")
    train, test = sources[:2400], sources[2400:]
    n_tokens = sources.max() + 1
    popularity = np.bincount(train.ravel(), minlength=n_tokens).astype(float)
    popularity[0] = 0
    transitions = np.zeros((n_tokens, n_tokens))
    np.add.at(transitions, (train[:, :-1].ravel(), train[:, 1:].ravel()), 1)
    truth = test[:, -1]
    pop_top5 = np.tile(np.argsort(-popularity)[:5], (len(test), 1))
    succ_scores = transitions[test[:, -2]] + 1e-6 * popularity  # popularity breaks ties
    succ_top5 = np.argsort(-succ_scores, axis=1)[:, :5]
    # Cluster popularity alone gives ~0.4 here; the planted successors give ~0.75.
    assert hr_at_5(succ_top5, truth) > 0.6
    assert hr_at_5(succ_top5, truth) > hr_at_5(pop_top5, truth) + 0.4


def bag_of_items(sources: np.ndarray) -> np.ndarray:
    bag = np.zeros((len(sources), sources.max() + 1))
    np.add.at(bag, (np.repeat(np.arange(len(sources)), sources.shape[1]), sources.ravel()), 1)
    bag[:, 0] = 0  # padding carries no information
    return bag


def naive_bayes_accuracy(sources: np.ndarray, labels: np.ndarray, n_train: int) -> float:
    """Multinomial naive Bayes on the bag of items, trained on the first n_train users."""
    bag = bag_of_items(sources)
    onehot = np.eye(labels.max() + 1)[labels]
    counts = bag[:n_train].T @ onehot[:n_train] + 1.0  # items x labels, add-one smoothing
    log_lik = np.log(counts / counts.sum(axis=0, keepdims=True))
    log_prior = np.log(onehot[:n_train].sum(axis=0) + 1.0)
    predicted = (bag[n_train:] @ log_lik + log_prior).argmax(axis=1)
    return float((predicted == labels[n_train:]).mean())


@pytest.mark.parametrize("task, margin", [("T4", 0.07), ("T5", 0.12), ("T6", 0.08)])
def test_labels_are_predictable_from_the_sequence(medium_dir, task, margin):
    sources, targets = load_task(medium_dir, task)
    labels = np.array([int(t[0]) for t in targets])
    n_train = int(0.8 * len(labels))
    majority = np.bincount(labels[:n_train]).argmax()
    majority_accuracy = float((labels[n_train:] == majority).mean())
    assert naive_bayes_accuracy(sources, labels, n_train) > majority_accuracy + margin


def test_clicks_are_predictable_from_the_sequence(medium_dir):
    sources, targets = load_task(medium_dir, "T2")
    first_target = np.array([int(t[0]) for t in targets])
    n_train = int(0.8 * len(sources))
    bag = bag_of_items(sources)
    onehot = np.eye(first_target.max() + 1)[first_target]
    co_counts = bag[:n_train].T @ onehot[:n_train]  # item x target co-occurrence
    scores = bag[n_train:] @ (co_counts / (co_counts.sum(axis=1, keepdims=True) + 1.0))
    truth = first_target[n_train:]
    pop_top5 = np.tile(np.argsort(-onehot[:n_train].sum(axis=0))[:5], (len(truth), 1))
    co_top5 = np.argsort(-scores, axis=1)[:, :5]
    assert hr_at_5(co_top5, truth) > hr_at_5(pop_top5, truth) + 0.1


def test_labels_follow_the_latent_primary_cluster():
    data = synthetic_data.generate_synthetic(users=3000, items=300, seed=2)
    keep, labels = data.labels["T5"]
    primary, labels = data.primary[keep], labels[keep]
    table = np.zeros((data.n_clusters, labels.max() + 1))
    np.add.at(table, (primary, labels), 1)
    oracle_accuracy = table.max(axis=1).sum() / len(labels)
    majority_accuracy = np.bincount(labels).max() / len(labels)
    assert oracle_accuracy > majority_accuracy + 0.15


def test_cli_writes_files_and_prints_summary(tmp_path, capsys):
    out = tmp_path / "new" / "dir"
    assert prepare_data.main(["synthetic", "--out", str(out), "--users", "30", "--items", "20"]) == 0
    assert len(read_lines(out / FILES["T1"])) == 30
    printed = capsys.readouterr().out
    assert "T1: 30 users" in printed and "T4:" in printed


def test_no_temporary_files_are_left_behind(small_dir):
    assert not [p for p in small_dir.iterdir() if p.name.startswith(".")]


def test_tiny_catalogue_still_generates(tmp_path):
    synthetic_data.write_synthetic(tmp_path, users=5, items=4, seed=3)
    sources, _ = load_task(tmp_path, "T1")
    assert sources.shape == (5, 100) and set(np.unique(sources)) <= set(range(5))


@needs_ttl_sample
def test_real_sample_has_the_shape_these_tests_check():
    """The format checks above accept the real TTL lines (guards the checker itself)."""
    for task in ("T1", "T2", "T4"):
        with open(TTL_SAMPLE / FILES[task], newline="") as f:
            lines = [f.readline().rstrip("\r\n") for _ in range(200)]
        for line in lines:
            tokens, targets = split_line(line)
            assert_left_padded_source(tokens)
            assert (targets is None) == (task == "T1")
