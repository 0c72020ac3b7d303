"""A tiny model trained a little longer learns planted structure: a shifted label, a broken head or
a frozen weight that should train would leave it at popularity or the majority label."""
import numpy as np
import pytest

from data_prep import task_files
import data_loader
import settings
import simple_baselines
import tasks
from conftest import run_stage

LEARN = ("--epochs=10", "--learning_rate=0.01", "--full_softmax=True")


@pytest.fixture(scope="module")
def trained(synthetic_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("learning")
    results = {}
    for name, extra in (("tp_t1", ("--exclude_padding=True",)), ("ret_t1", ("--exclude_padding=True", "--epochs=5")),
                        ("tp_t2", ())):
        results[name] = run_stage(name, synthetic_dir, out, *LEARN, *extra)
    config = {**settings.DEFAULTS, **settings.CHAIN_DEFAULTS, "data_dir": str(synthetic_dir)}
    t1 = data_loader.load_task_data(1, config)
    return results, {1: t1, 2: data_loader.load_task_data(2, config, t1.vocab)}


def test_next_item_model_beats_popularity_by_far(trained):
    results, data = trained
    popular = simple_baselines.popularity(data[1])
    assert results["ret_t1"]["HR@5"] > popular["HR@5"] + 0.3
    assert results["ret_t1"]["MRR@5"] > popular["MRR@5"] + 0.15


def test_clicks_model_beats_popularity_clearly(trained):
    results, data = trained
    popular = simple_baselines.popularity(data[2])
    assert results["tp_t2"]["HR@5"] > popular["HR@5"] + 0.1
    assert results["tp_t2"]["MRR@5"] > popular["MRR@5"] + 0.03


GROUP_SHARES = (0.4, 0.3, 0.2, 0.1)  # label k+1 <=> the user's items all come from group k
ITEMS_PER_GROUP = 10


@pytest.fixture(scope="module")
def grouped_labels_dir(tmp_path_factory):
    """T1 and T5 files where a user's age label is the group all of its items come from: a model
    that reads its input and its head correctly is near 100%, the majority label 40%."""
    rng = np.random.default_rng(0)
    users = 400
    groups = rng.choice(len(GROUP_SHARES), size=users, p=GROUP_SHARES)
    tokens = np.zeros((users, 100), dtype=np.int64)
    for row, group in enumerate(groups):
        length = rng.integers(5, 30)
        tokens[row, -length:] = 1 + group * ITEMS_PER_GROUP + rng.integers(0, ITEMS_PER_GROUP, size=length)
    out = tmp_path_factory.mktemp("grouped")
    task_files.write_atomically(out / tasks.FILES["T1"], task_files.encode_lines(tokens))
    task_files.write_atomically(out / tasks.FILES["T5"], task_files.encode_lines(
        tokens, (groups + 1)[:, None], np.ones(users, dtype=np.int64)))
    return out


@pytest.mark.parametrize("full_softmax", [True, False], ids=["softmax", "release-logistic"])
def test_classifier_beats_majority_by_far(grouped_labels_dir, tmp_path, full_softmax):
    result = run_stage("sinmo_t5", grouped_labels_dir, tmp_path, "--channels=16", "--dilations=[1,2]",
                       "--epochs=4", "--learning_rate=0.01", f"--full_softmax={full_softmax}")
    config = {**settings.DEFAULTS, **settings.CHAIN_DEFAULTS, "data_dir": str(grouped_labels_dir)}
    t1 = data_loader.load_task_data(1, config)
    majority = simple_baselines.popularity(data_loader.load_task_data(5, config, t1.vocab))["accuracy"]
    assert majority < 0.5
    assert result["accuracy"] > majority + 0.4
