"""The baselines of docs/design.md section 9 train exactly the variables their method allows."""
import shutil

import numpy as np
import pytest

from conftest import run_stage

ARCH = ("--channels=16", "--dilations=[1,2]")


@pytest.fixture(scope="module")
def baselines(synthetic_dir, tmp_path_factory):
    """sinmo_t1, then T2 with every baseline, in one output folder: (folder, {stage: results})."""
    out = tmp_path_factory.mktemp("baselines")
    results = {"sinmo_t1": run_stage("sinmo_t1", synthetic_dir, out, *ARCH)}
    t1_weights = (out / "Models" / "sinmo_t1" / "weights.npz").read_bytes()
    for method in ("finesmax", "peterrec", "finall", "sinmoall"):
        results[f"{method}_t2"] = run_stage(f"{method}_t2", synthetic_dir, out)
    results["sinmo_t2"] = run_stage("sinmo_t2", synthetic_dir, out, *ARCH)
    assert (out / "Models" / "sinmo_t1" / "weights.npz").read_bytes() == t1_weights, "T1 checkpoint must not move"
    return out, results


def weights(out, stage_name):
    with np.load(out / "Models" / stage_name / "weights.npz") as saved:
        return {name: saved[name] for name in saved.files}


def moved(before, after, prefix):
    return {name for name in after if name.startswith(prefix) and name in before
            and not np.array_equal(before[name], after[name])}


@pytest.mark.parametrize("method", ["finesmax", "peterrec"])
def test_frozen_backbone_methods_leave_every_backbone_weight_bit_identical(baselines, method):
    out = baselines[0]
    assert not moved(weights(out, "sinmo_t1"), weights(out, f"{method}_t2"), "backbone/")


def test_peterrec_trains_its_patches_and_head_only(baselines):
    after = weights(baselines[0], "peterrec_t2")
    patches = [name for name in after if name.startswith("patch_t2_")]
    assert len(patches) == 2 * 4  # down and up of one patch per conv
    assert all(after[name].any() for name in patches if name.endswith("/up")), "zero-initialised up must train"
    assert not moved(weights(baselines[0], "sinmo_t1"), after, "head_t1/")


@pytest.mark.parametrize("method", ["sinmoall", "finall"])
def test_fine_tuning_methods_change_t1_weights(baselines, method):
    out = baselines[0]
    changed = moved(weights(out, "sinmo_t1"), weights(out, f"{method}_t2"), "backbone/")
    assert "backbone/embedding/embeddings" in changed
    assert any(name.endswith("conv1/kernel") for name in changed)


def test_sinmo_starts_every_task_from_scratch(baselines, synthetic_dir):
    out = baselines[0]
    t1, t2 = weights(out, "sinmo_t1"), weights(out, "sinmo_t2")
    assert "head_t1/weight" not in t2
    assert not np.array_equal(t1["backbone/embedding/embeddings"], t2["backbone/embedding/embeddings"])


def test_stored_parameters_follow_each_method(baselines):
    stored = {name: result["stored_parameters"] for name, result in baselines[1].items()}
    head = stored["finesmax_t2"]
    assert stored["sinmoall_t2"] == head
    assert head < stored["peterrec_t2"] < stored["finall_t2"] == stored["sinmo_t2"]
    assert stored["sinmo_t1"] > stored["finall_t2"]  # T1's softmax head is the largest part


def test_conure_stores_its_owned_weights_and_head(t1_run, synthetic_dir, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(t1_run[0], out)
    result = run_stage("tp_t2", synthetic_dir, out)
    owned_per_kernel = int(0.21 * 3 * 16 * 16)  # floor of T2's share of each of the 4 kernels
    assert result["stored_parameters"] == 4 * owned_per_kernel + result["n_targets"] * 16


def test_freeze_embedding_keeps_finealls_item_embedding(synthetic_dir, tmp_path):
    run_stage("sinmo_t1", synthetic_dir, tmp_path, *ARCH)
    run_stage("finall_t2", synthetic_dir, tmp_path, "--freeze_embedding=True")
    with np.load(tmp_path / "Models" / "sinmo_t1" / "weights.npz") as before, \
            np.load(tmp_path / "Models" / "finall_t2" / "weights.npz") as after:
        embedding = next(name for name in before.files if name.endswith("embedding/embeddings"))
        assert np.array_equal(before[embedding], after[embedding])
        convs = [name for name in before.files if name.endswith("conv1/kernel")]
        assert not np.array_equal(before[convs[0]], after[convs[0]])  # the rest still fine-tunes
