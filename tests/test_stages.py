"""Stage scripts end to end on tiny synthetic data: outputs, ownership, chaining, zero forgetting."""
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import assembly
import data_loader
import evaluate
import methods
import metrics
import pruning
import reference
import run_all
import settings
import stage
from conftest import ROOT, TINY, TTL_SAMPLE, needs_ttl_sample, run_stage

METRICS = ("MRR@5", "HR@5", "NDCG@5")


@pytest.mark.parametrize("method", run_all.METHODS)
def test_a_methods_chain_holds_every_stage_it_starts_from_and_each_tasks_own_stage(method):
    names = methods.stage_names(method, [1, 2, 3])
    for position, name in enumerate(names):
        assert methods.previous_stage(name) in (None, *names[:position])
        assert methods.method_of(methods.parse_stage(name)[0]) in (method, "sinmo")
    assert [methods.own_stage(method, k) for k in (1, 2, 3)] == [n for n in names if not n.startswith("tp_")]


def test_t1_stages_write_checkpoints_and_results(t1_run):
    out, tp, ret = t1_run
    for name, result in (("tp_t1", tp), ("ret_t1", ret)):
        names = {p.name for p in (out / "Models" / name).iterdir()}
        assert {"weights.npz", "ownership.npz", "config.json", "vocab.json", "manifest.json"} <= names
        saved = json.loads((out / "Results" / f"{name}.json").read_text())
        timing = json.loads((out / "Results" / f"{name}.timing.json").read_text())
        assert {**saved, **timing} == json.loads(json.dumps(result))
        assert saved["stage"] == name and saved["task"] == 1
        assert saved["n_eval"] == 48 and not saved["eval_capped"]  # 20% of 240 users
    assert not [p for p in (out / "Models").iterdir() if p.name.startswith(".")], "temporary folders left"


@pytest.mark.parametrize("name", ["tp_t1", "ret_t1"])
def test_held_out_metrics_are_those_of_a_numpy_forward_pass(t1_run, synthetic_dir, name):
    # the pruned (tp_t1) and retrained (ret_t1) models, recomputed from their checkpoint files alone
    out, results = t1_run[0], {"tp_t1": t1_run[1], "ret_t1": t1_run[2]}
    directory = out / "Models" / name
    config = {**json.loads((directory / "config.json").read_text()), "data_dir": str(synthetic_dir)}
    data = data_loader.load_task_data(1, config, data_loader.Vocab.load(directory / "vocab.json"))
    tokens, truth = data.test_inputs()
    scores = reference.checkpoint_scores(directory, tokens, task=1)
    expected = metrics.ranking_metrics(metrics.ranks_of(scores, truth, data.excluded_targets))
    assert {m: results[name][m] for m in METRICS} == pytest.approx(expected, abs=1e-12)


def test_tp_t1_trains_embedding_and_layernorms_and_later_stages_do_not(conure_chain):
    out = conure_chain[0]
    first = out / "Models" / "tp_t1"
    config = json.loads((first / "config.json").read_text())
    fresh = assembly.build_model(data_loader.Vocab.load(first / "vocab.json").size, config)  # tp_t1's start
    initial = {v.path: np.asarray(v.numpy()) for v in fresh.variables}
    saved = {}
    for name in ("tp_t1", "ret_t1", "tp_t2", "ret_t2", "tp_t3"):
        with np.load(out / "Models" / name / "weights.npz") as weights:
            saved[name] = {p: weights[p] for p in weights.files if p.startswith("backbone/") and "/conv" not in p}
    assert saved["tp_t1"].keys() == {p for p in initial if "/conv" not in p}
    for path, value in saved["tp_t1"].items():
        assert not np.array_equal(value, initial[path]), f"tp_t1 left {path} at its initial value"
        for later in ("ret_t1", "tp_t2", "ret_t2", "tp_t3"):
            np.testing.assert_array_equal(saved[later][path], value, err_msg=f"{later} moved {path}")


def test_t1_owns_exactly_30_percent_of_every_kernel(t1_run):
    owners, ratios = pruning.load(t1_run[0] / "Models" / "ret_t1")
    assert ratios == [0.7] and len(owners) == 4
    for owner in owners.values():
        assert (owner == 1).sum() == math.floor(0.3 * owner.size)
        assert set(np.unique(owner)) == {0, 1}


def test_ret_t1_moves_only_t1_conv_weights(t1_run):
    out = t1_run[0]
    owners, _ = pruning.load(out / "Models" / "ret_t1")
    with np.load(out / "Models" / "tp_t1" / "weights.npz") as tp, np.load(out / "Models" / "ret_t1" / "weights.npz") as ret:
        for path in tp.files:
            conv = path.rsplit("/", 1)[0]
            if conv in owners:
                np.testing.assert_array_equal(ret[path][owners[conv] != 1], tp[path][owners[conv] != 1])
                assert (ret[path][owners[conv] == 1] != tp[path][owners[conv] == 1]).any()
            elif not path.startswith("head_t1/"):
                np.testing.assert_array_equal(ret[path], tp[path], err_msg=path)


def test_evaluate_reproduces_the_retrain_scores_bit_for_bit(t1_run, synthetic_dir):
    out, _, ret = t1_run
    again = evaluate.evaluate_task(1, "ret_t1", synthetic_dir, out)
    assert again["scores_sha256"] == ret["scores_sha256"]
    assert all(again[m] == ret[m] for m in METRICS)


def test_ret_t1_without_tp_t1_fails_with_one_line(synthetic_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        stage.main("ret_t1", {}, [f"--data_dir={synthetic_dir}", f"--out_dir={tmp_path}", "--verbose=0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "run conure_tp_t1.py first" in err
    assert not (tmp_path / "Models" / "ret_t1").exists()


@pytest.mark.parametrize("argv, message", [
    (["--epochz=3"], "unknown hyperparameter"),
    (["--epochs=-1"], "epochs=-1"),
    (["--prune_ratio=1.5"], "prune_ratio=1.5"),
    (["--epochs=three"], "not a valid int"),
])
def test_bad_hyperparameters_are_rejected_before_any_work(synthetic_dir, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit):
        stage.main("tp_t1", {"epochs": 4, "prune_ratio": 0.7}, [f"--data_dir={synthetic_dir}",
                                                                 f"--out_dir={tmp_path}", *argv])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "Models").exists()


def test_chain_setting_that_disagrees_with_the_checkpoint_is_refused(t1_run, synthetic_dir):
    with pytest.raises(settings.ConfigError, match="channels=32.*channels=16"):
        run_stage("tp_t2", synthetic_dir, t1_run[0], "--channels=32")


@needs_ttl_sample
def test_short_run_on_the_real_ttl_sample(tmp_path):
    result = run_stage("tp_t1", TTL_SAMPLE, tmp_path, "--batch_size=256", "--eval_cap=300",
                       "--num_sampled_ratio=0.02")
    assert result["n_targets"] == 123_726 + 3 and result["n_train"] == 8000
    assert result["n_eval"] == 300 and result["eval_capped"]


def test_stage_scripts_run_unchanged_on_jax(synthetic_dir, tmp_path):
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    for script in ("conure_tp_t1.py", "conure_ret_t1.py"):
        argv = [f"--data_dir={synthetic_dir}", f"--out_dir={tmp_path}", *TINY]
        if script == "conure_ret_t1.py":
            argv = [a for a in argv if not a.startswith(("--channels", "--dilations"))]
        done = subprocess.run([sys.executable, script, *argv], cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "Results" / "ret_t1.json").read_text())
    assert result["backend"] == "jax" and result["eval_settings"]["backend"] == "jax"
    # the checkpoint is backend-neutral: TensorFlow ranks the held-out users as JAX did
    again = evaluate.evaluate_task(1, "ret_t1", synthetic_dir, tmp_path)
    assert again["eval_settings"]["backend"] == "tensorflow"
    assert {m: again[m] for m in METRICS} == {m: result[m] for m in METRICS}


def test_l2_comes_from_the_task_table_unless_given(conure_chain, synthetic_dir, tmp_path):
    import tasks

    results = conure_chain[1]
    assert [results[f"tp_t{k}"]["config"]["l2"] for k in (2, 3)] == [tasks.task(2).l2, tasks.task(3).l2] == [0.02, 0.05]
    shutil.copytree(conure_chain[0] / "Models" / "ret_t1", tmp_path / "Models" / "ret_t1")
    config, explicit = stage.make_config("tp_t2", {}, [f"--data_dir={synthetic_dir}", f"--out_dir={tmp_path}",
                                                       "--epochs=1", "--verbose=0", "--l2=0.5"])
    stage.run_stage("tp_t2", config, explicit)
    manifest = json.loads((tmp_path / "Models" / "tp_t2" / "manifest.json").read_text())
    assert manifest["tasks"][-1]["l2"] == 0.5


def t1_output_norm(out_dir, name):
    with np.load(out_dir / "Models" / name / "weights.npz") as weights:
        (key,) = [k for k in weights.files if "head_t1" in k and k.endswith("weight")]
        return float(np.linalg.norm(weights[key]))


def test_l2_on_t1_shrinks_its_output_weights(synthetic_dir, tmp_path):
    for l2 in (0.0, 1.0):
        run_stage("tp_t1", synthetic_dir, tmp_path / str(l2), "--epochs=3", f"--l2={l2}")
    assert t1_output_norm(tmp_path / "1.0", "tp_t1") < 0.8 * t1_output_norm(tmp_path / "0.0", "tp_t1")


def test_ret_t1_keeps_the_l2_of_tp_t1_unless_given(synthetic_dir, tmp_path):
    run_stage("tp_t1", synthetic_dir, tmp_path, "--l2=1.0")
    run_stage("ret_t1", synthetic_dir, tmp_path)
    manifest = json.loads((tmp_path / "Models" / "ret_t1" / "manifest.json").read_text())
    assert manifest["config"]["l2"] == manifest["tasks"][0]["l2"] == 1.0


def test_ret_t1_trains_with_its_own_l2_and_records_it(t1_run, synthetic_dir, tmp_path):
    shutil.copytree(t1_run[0] / "Models" / "tp_t1", tmp_path / "Models" / "tp_t1")
    run_stage("ret_t1", synthetic_dir, tmp_path, "--l2=1.0")
    manifest = json.loads((tmp_path / "Models" / "ret_t1" / "manifest.json").read_text())
    assert manifest["tasks"][0]["l2"] == 1.0
    assert t1_output_norm(tmp_path, "ret_t1") < t1_output_norm(t1_run[0], "ret_t1")
