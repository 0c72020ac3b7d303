"""Zero forgetting proven on the weights, and score hashes compared only like with like."""
import json
import shutil

import numpy as np
import pytest

import assembly
import data_loader
import evaluate
import metrics
import proof
import pruning
from conftest import rewrite_weights


def owned_count(directory, tasks_up_to):
    owners, _ = pruning.load(directory)
    return sum(int(((o > 0) & (o <= tasks_up_to)).sum()) for o in owners.values())


def read_by(directory, task):
    """What task K reads: embedding, LayerNorms and head K whole, conv entries owned by 1..K."""
    with np.load(directory / "weights.npz") as saved:
        whole = sum(saved[p].size for p in saved.files
                    if p.startswith(f"head_t{task}/") or (p.startswith("backbone/") and "/conv" not in p))
    return whole + owned_count(directory, task)


def copy_checkpoint(out, stage_name, destination):
    shutil.copytree(out / "Models" / stage_name, destination / "Models" / stage_name)


def flip_one_bit(kernel_path, where):
    def change(weights):
        weights[kernel_path].view(np.uint32)[where] ^= 1
    return change


@pytest.fixture
def proof_dir(conure_chain, tmp_path):
    """ret_t1 and a copy of ret_t3 in a fresh out_dir, ready to be tampered with."""
    for name in ("ret_t1", "ret_t3"):
        copy_checkpoint(conure_chain[0], name, tmp_path)
    return tmp_path


def test_proof_compares_everything_each_earlier_task_reads(conure_chain):
    out = conure_chain[0]
    for task in (1, 2):
        found = evaluate.prove_task(task, "ret_t3", out)
        assert found.holds and found.reference == f"ret_t{task}"
        assert found.compared == read_by(out / "Models" / "ret_t3", task)


def test_proof_cli_prints_one_line_and_exits_0(conure_chain, capsys):
    evaluate.main(["--task=1", "--stage=ret_t3", "--proof", f"--out_dir={conure_chain[0]}"])
    n = read_by(conure_chain[0] / "Models" / "ret_t3", 1)
    assert capsys.readouterr().out == f"parameters read by T1: {n:,} compared, {n:,} identical\n"


def test_one_flipped_bit_of_a_t1_weight_fails_the_proof(proof_dir, capsys):
    owners, _ = pruning.load(proof_dir / "Models" / "ret_t3")
    kernel = "backbone/block_1/conv2"
    where = tuple(np.argwhere(owners[kernel] == 1)[7])
    rewrite_weights(proof_dir / "Models" / "ret_t3", flip_one_bit(f"{kernel}/kernel", where))
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--task=1", "--stage=ret_t3", "--proof", f"--out_dir={proof_dir}"])
    assert exit_info.value.code == 1
    printed = capsys.readouterr()
    n = read_by(proof_dir / "Models" / "ret_t3", 1)
    assert printed.out == f"parameters read by T1: {n:,} compared, {n - 1:,} identical\n"
    assert f"{kernel}/kernel{list(map(int, where))}" in printed.err


def test_a_changed_weight_t1_does_not_read_leaves_its_proof_intact(conure_chain, proof_dir):
    owners, _ = pruning.load(proof_dir / "Models" / "ret_t3")
    kernel = "backbone/block_0/conv1"
    where = tuple(np.argwhere(owners[kernel] == 3)[0])  # owned by T3: T1 never reads it
    rewrite_weights(proof_dir / "Models" / "ret_t3", flip_one_bit(f"{kernel}/kernel", where))
    assert evaluate.prove_task(1, "ret_t3", proof_dir).holds
    untouched = conure_chain[0] / "Models" / "ret_t3"
    assert not proof.prove(3, untouched, proof_dir / "Models" / "ret_t3", owned_only=True).holds


def test_a_changed_t1_head_fails_the_proof(proof_dir):
    def change(weights):
        weights["head_t1/bias"][5] += 1e-3
    rewrite_weights(proof_dir / "Models" / "ret_t3", change)
    found = evaluate.prove_task(1, "ret_t3", proof_dir)
    assert not found.holds and found.first_difference.startswith("head_t1/bias[5]")


def test_scores_do_not_depend_on_the_eval_batch_size(conure_chain, synthetic_dir):
    out = conure_chain[0]
    model, manifest, vocab, _, _ = assembly.restore(out / "Models" / "ret_t2", "ret_t2")
    config = {**manifest["config"], "data_dir": str(synthetic_dir)}
    data = data_loader.load_task_data(2, config, vocab)
    assert data.n_test > 64, "needs two batches of 64"
    results = [evaluate.score(model, 2, data, {**config, "eval_batch_size": size}) for size in (64, 128, 192)]
    for result in results[1:]:
        assert result["scores_sha256"] == results[0]["scores_sha256"]  # every score, so every rank
        assert {k: result[k] for k in ("MRR@5", "HR@5", "NDCG@5")} == {
            k: results[0][k] for k in ("MRR@5", "HR@5", "NDCG@5")}


def test_results_record_the_settings_their_hash_depends_on(conure_chain):
    settings = conure_chain[1]["ret_t2"]["eval_settings"]
    assert {"eval_block", "eval_batch_size", "eval_mode", "precision", "backend", "keras", "device"} <= set(settings)
    assert settings["eval_batch_size"] == 64 and settings["precision"] == "float32"
    saved = json.loads((conure_chain[0] / "Results" / "ret_t2.json").read_text())
    assert saved["eval_settings"] == settings


def test_hashes_made_under_other_settings_are_not_compared():
    same = {"precision": "float32", "device": "CPU x", "eval_batch_size": 64}
    other = {**same, "precision": "mixed_bfloat16", "eval_batch_size": 256}
    assert metrics.hash_verdict([("a", same), ("a", {**same, "eval_batch_size": 256})]) == "bit-identical"
    assert metrics.hash_verdict([("a", same), ("b", same)]) == "changed"
    assert metrics.hash_verdict([("a", same), ("a", other)]) == (
        "not comparable: precision float32 vs mixed_bfloat16")
    assert metrics.hash_verdict([("a", same), ("a", None)]).startswith("not comparable: evaluation settings not")
