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


# ---------------------------------------------------------------- --show_config: every setting and its source

def shown(text, name, setting):
    """(value, source) of `setting` in stage `name`'s block of --show_config's output."""
    block = text.split(f"{name}:\n")[1].split("\n\n")[0]
    line = next(line for line in block.splitlines() if line.split()[0] == setting)
    value, source = line.split(None, 1)[1].split(None, 1)
    return value, source.strip()


def test_a_stage_scripts_show_config_names_the_winner_of_a_setting_set_in_three_places(tmp_path, capsys):
    import stage

    block = {"learning_rate": 0.01, "batch_size": 64, "out_dir": str(tmp_path / "out")}  # beside the default's 1e-4
    stage.main("tp_t2", block, ["--learning_rate=0.5", "--show_config"])
    text = capsys.readouterr().out
    assert shown(text, "tp_t2", "learning_rate") == ("0.5", "command line")
    assert shown(text, "tp_t2", "batch_size") == ("64", "script block (conure_tp_t2.py)")
    assert shown(text, "tp_t2", "rho") == ("0.3", "default (settings.DEFAULTS)")
    assert shown(text, "tp_t2", "channels")[1].startswith("the chain's default")  # no ret_t1 checkpoint here
    assert not (tmp_path / "out").exists()  # no work


def test_run_alls_show_config_follows_a_setting_through_preset_tuned_choice_and_option(
        synthetic_dir, tmp_path, monkeypatch, capsys):
    import run_all

    data = presets.DataSettings(synthetic_dir)
    tuned = {"name": "tiny", "later": {"learning_rate": 3e-4}, "architecture": {"channels": 24}}
    monkeypatch.setitem(presets.TUNED, data.t1_sha256, tuned)
    argv = [f"--data_dir={synthetic_dir}", f"--out_dir={tmp_path / 'out'}", "--tasks=1-2", "--preset=converged",
            "--show_config"]
    run_all.main(argv)
    text = capsys.readouterr().out
    assert shown(text, "tp_t2", "learning_rate") == ("0.0003", "tuned for tiny (presets.TUNED)")
    assert shown(text, "tp_t2", "patience") == ("3", "preset converged")
    assert shown(text, "tp_t2", "channels") == ("24", "the previous stage, ret_t1")  # as tp_t1 will make it
    assert shown(text, "tp_t1", "channels") == ("24", "tuned for tiny (presets.TUNED)")
    run_all.main(argv + ["--later_learning_rate=0.002"])
    later = shown(capsys.readouterr().out, "tp_t2", "learning_rate")
    assert later == ("0.002", "run_all.py --later_learning_rate=0.002")
    assert not (tmp_path / "out").exists()
