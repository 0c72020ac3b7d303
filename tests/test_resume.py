"""Interrupted stages resume to the very same weights; the same command gives the same results."""
import json
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

import checkpoint
import evaluate
import settings
import stage
from conftest import ROOT, TINY, run_stage

SLOW_ENOUGH = ["--epochs=12", "--batch_size=8", "--save_every=7", "--eval_every=0"]


def stage_command(data_dir, out_dir):
    return [sys.executable, "conure_tp_t1.py", f"--data_dir={data_dir}", f"--out_dir={out_dir}", *TINY, *SLOW_ENOUGH]


def assert_same_arrays(path_a, path_b):
    with np.load(path_a) as a, np.load(path_b) as b:
        assert a.files == b.files
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_stage_killed_with_sigkill_resumes_to_bit_identical_weights(synthetic_dir, tmp_path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(stage_command(synthetic_dir, whole), cwd=ROOT, check=True, capture_output=True)

    process = subprocess.Popen(stage_command(synthetic_dir, killed), cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    snapshot = killed / "Models" / ".tp_t1.resume" / "manifest.json"
    deadline = time.time() + 120
    while not snapshot.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert snapshot.exists() and not (killed / "Models" / "tp_t1").exists(), "the kill must land mid-training"
    position = json.loads(snapshot.read_text())["position"]
    assert (position["epoch"], position["step"]) != (0, 0)

    subprocess.run(stage_command(synthetic_dir, killed), cwd=ROOT, check=True, capture_output=True)
    for name in ("weights.npz", "ownership.npz"):
        assert_same_arrays(whole / "Models" / "tp_t1" / name, killed / "Models" / "tp_t1" / name)
    assert not (killed / "Models" / ".tp_t1.resume").exists()


def test_snapshot_is_resumed_only_by_the_run_that_wrote_it(tmp_path):
    import keras

    import fit
    import trainer

    variable = keras.Variable(np.arange(3, dtype="float32"), name="w")
    optimizer = trainer.adam(1e-3)
    optimizer.build([variable])
    selection = fit.Selection([variable], "MRR@5", patience=2)
    selection.update(1, {"MRR@5": 0.5})
    snapshots = fit.Snapshots(tmp_path / ".resume", fingerprint="run-a")
    snapshots.save([variable], optimizer, selection, {"epoch": 1, "step": 5})
    variable.assign(np.zeros(3, "float32"))
    fresh = fit.Selection([variable], "MRR@5", patience=2)
    assert fit.Snapshots(tmp_path / ".resume", "run-b").restore([variable], optimizer, fresh, log=print) is None
    assert not variable.numpy().any() and fresh.values is None
    position = snapshots.restore([variable], optimizer, fresh, log=print)
    assert position == {"epoch": 1, "step": 5, "selection": {"epoch": 1, "value": 0.5, "waited": 0}}
    np.testing.assert_array_equal(variable.numpy(), [0, 1, 2])
    np.testing.assert_array_equal(fresh.values[0], [0, 1, 2])  # the best weights survive a restart too


def test_same_command_twice_gives_bit_identical_results_files(synthetic_dir, tmp_path):
    run_stage("tp_t1", synthetic_dir, tmp_path)
    run_stage("ret_t1", synthetic_dir, tmp_path)
    first = {name: (tmp_path / "Results" / f"{name}.json").read_bytes() for name in ("tp_t1", "ret_t1")}
    shutil.rmtree(tmp_path / "Models")
    shutil.rmtree(tmp_path / "Results")
    run_stage("tp_t1", synthetic_dir, tmp_path)
    run_stage("ret_t1", synthetic_dir, tmp_path)
    for name, content in first.items():
        assert (tmp_path / "Results" / f"{name}.json").read_bytes() == content


def test_settings_added_later_stay_out_of_the_fingerprint_at_their_old_behaviour():
    config = {**settings.DEFAULTS, **settings.CHAIN_DEFAULTS}
    before_they_existed = {k: v for k, v in config.items() if k not in settings.ADDED_LATER}
    fingerprint = stage.run_fingerprint("tp_t1", config, {}, None)
    assert fingerprint == stage.run_fingerprint("tp_t1", before_they_existed, {}, None)
    for name in settings.ADDED_LATER:
        changed = {**config, name: 0.5 if name == "token_dropout" else 5}
        assert stage.run_fingerprint("tp_t1", changed, {}, None) != fingerprint, name


def test_checkpoint_saved_before_settings_were_added_still_evaluates(t1_run, synthetic_dir, tmp_path):
    for name in ("old", "current"):
        shutil.copytree(t1_run[0] / "Models", tmp_path / name / "Models")
    manifest_path = tmp_path / "old" / "Models" / "ret_t1" / "manifest.json"
    manifest = checkpoint.read_json(manifest_path)
    manifest["config"] = {k: v for k, v in manifest["config"].items() if k not in settings.ADDED_LATER}
    checkpoint.write_json(manifest, manifest_path)
    old = evaluate.evaluate_task(1, "ret_t1", synthetic_dir, tmp_path / "old")
    current = evaluate.evaluate_task(1, "ret_t1", synthetic_dir, tmp_path / "current")
    assert old["scores_sha256"] == current["scores_sha256"]
