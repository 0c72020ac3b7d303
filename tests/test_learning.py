"""A tiny model trained a little longer learns the synthetic data's planted structure: a shifted
label, a broken head or a frozen weight that should train would leave it at popularity."""
import pytest

import simple_baselines
import stage
from conftest import run_stage

LEARN = ("--epochs=10", "--learning_rate=0.01", "--full_softmax=True")


@pytest.fixture(scope="module")
def trained(synthetic_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("learning")
    results = {}
    for name, extra in (("tp_t1", ("--exclude_padding=True",)), ("ret_t1", ("--exclude_padding=True", "--epochs=5")),
                        ("tp_t2", ())):
        results[name] = run_stage(name, synthetic_dir, out, *LEARN, *extra)
    config = {**stage.DEFAULTS, **stage.CHAIN_DEFAULTS, "data_dir": str(synthetic_dir)}
    t1 = stage.load_task_data(1, config)
    return results, {1: t1, 2: stage.load_task_data(2, config, t1.vocab)}


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
