"""presets.py: what each preset sets for a stage."""
import presets


def test_tuned_settings_replace_only_their_own_entries(synthetic_dir, monkeypatch):
    data = presets.DataSettings(synthetic_dir)
    monkeypatch.setitem(presets.TUNED, data.t1_sha256, {"name": "tiny", "later": {"learning_rate": 3e-4}})
    data = presets.DataSettings(synthetic_dir)
    later = presets.overrides("tp_t2", "converged", data)
    assert later["learning_rate"] == 3e-4
    assert later["batch_size"] == presets.DEFAULT_CONVERGED["later"]["batch_size"]
    assert later["epochs"] == presets.DEFAULT_CONVERGED["later"]["epochs"]
    assert presets.overrides("tp_t1", "converged", data)["learning_rate"] == presets.DEFAULT_CONVERGED["t1"]["learning_rate"]


def test_converged_classification_tasks_use_the_full_softmax_and_t1_its_own_patience(synthetic_dir):
    data = presets.DataSettings(synthetic_dir)
    assert presets.overrides("tp_t4", "converged", data)["full_softmax"] is True
    assert presets.overrides("tp_t4", "converged", data, class_loss="logistic")["full_softmax"] is False
    assert presets.overrides("ret_t1", "converged", data)["patience"] == 5
    assert presets.overrides("ret_t2", "converged", data)["patience"] == presets.SELECTION["patience"]
    assert "channels" not in presets.overrides("ret_t1", "converged", data)


def test_a_large_catalogue_samples_t1s_softmax_but_leaves_teracons_full(synthetic_dir, monkeypatch):
    monkeypatch.setattr(presets, "FULL_SOFTMAX_MAX_ITEMS", 10)
    data = presets.DataSettings(synthetic_dir)
    assert presets.overrides("tp_t1", "converged", data)["full_softmax"] is False
    assert presets.overrides("teracon_t1", "converged", data).get("full_softmax", True) is True


def test_item_loss_sets_the_later_item_tasks_only(synthetic_dir):
    data = presets.DataSettings(synthetic_dir)
    assert presets.overrides("tp_t2", "converged", data, item_loss="softmax")["full_softmax"] is True
    assert presets.overrides("ret_t3", "converged", data, item_loss="bpr")["full_softmax"] is False
    assert presets.overrides("tp_t1", "converged", data, item_loss="bpr")["full_softmax"] is True
    assert "full_softmax" not in presets.overrides("tp_t2", "converged", data)
    assert presets.overrides("tp_t4", "converged", data, item_loss="bpr")["full_softmax"] is True
