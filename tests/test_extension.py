"""Beyond the release (docs/extension.md): Conure with its item embedding shared like the kernels
or added to by each later task, heads that pool every non-padding position, and the release's
behaviour left as it was."""
import json
import shutil

import keras
import numpy as np
import pytest

import assembly
import data_loader
import presets
import proof
import pruning
import run_all
import settings
import stage
from conftest import rewrite_weights, run_stage
from data_loader import PAD, SEP
import reference

CHAIN = ("tp_t1", "ret_t1", "tp_t2", "ret_t2", "tp_t3", "ret_t3")
EMBEDDING = "backbone/embedding"  # the shared embedding's owner map and, under it, its table


def run_chain(synthetic_dir, out, embedding):
    for name in CHAIN:
        run_stage(name, synthetic_dir, out, *([f"--embedding={embedding}"] if name == "tp_t1" else []),
                  "--epochs=2", "--learning_rate=3e-3")
    return out


@pytest.fixture(scope="module")
def owned_chain(synthetic_dir, tmp_path_factory):
    """T1-T3 with the item embedding shared by owner maps."""
    return run_chain(synthetic_dir, tmp_path_factory.mktemp("owned"), "owned")


@pytest.fixture(scope="module")
def delta_chain(synthetic_dir, tmp_path_factory):
    """T1-T3 with a low-rank addition to the item embedding per later task."""
    return run_chain(synthetic_dir, tmp_path_factory.mktemp("delta"), "delta")


def table_and_owner(out, name):
    with np.load(out / "Models" / name / "weights.npz") as saved:
        table = saved[f"{EMBEDDING}/embeddings"]
    return table, pruning.load(out / "Models" / name)[0][EMBEDDING]


# ---------------------------------------------------------------- the item embedding shared like the kernels

def test_each_task_keeps_its_share_of_the_embedding(owned_chain):
    _, owner = table_and_owner(owned_chain, "ret_t3")
    shares = np.bincount(owner.ravel(), minlength=4) / owner.size
    ratio = settings.DEFAULTS["embedding_prune_ratio"]
    np.testing.assert_allclose(shares[1:], [1 - ratio, ratio * (1 - ratio), ratio ** 2 * (1 - ratio)], atol=1e-3)
    assert pruning.load_own_ratios(owned_chain / "Models" / "ret_t3") == {EMBEDDING: [ratio] * 3}


def test_a_later_task_leaves_every_earlier_tasks_embedding_entries_bit_identical(owned_chain):
    for earlier, later in (("ret_t1", "ret_t2"), ("ret_t1", "ret_t3"), ("ret_t2", "ret_t3")):
        before, owner = table_and_owner(owned_chain, earlier)
        after, _ = table_and_owner(owned_chain, later)
        task = int(earlier[-1])
        kept = (owner > 0) & (owner <= task)
        assert np.array_equal(before[kept].view(np.uint32), after[kept].view(np.uint32))
        assert not np.array_equal(before[~kept], after[~kept])  # the later task trained the rest


@pytest.fixture
def proof_dir(owned_chain, tmp_path):
    for name in ("ret_t1", "ret_t3"):
        shutil.copytree(owned_chain / "Models" / name, tmp_path / "Models" / name)
    return tmp_path


def flip_embedding_bit(where):
    def change(weights):
        weights[f"{EMBEDDING}/embeddings"].view(np.uint32)[where] ^= 1
    return change


def test_the_proof_covers_the_shared_embedding(proof_dir):
    found = proof.prove_stage(1, "ret_t3", proof_dir / "Models")
    assert found.holds
    _, owner = table_and_owner(proof_dir, "ret_t1")
    with np.load(proof_dir / "Models" / "ret_t1" / "weights.npz") as saved:
        others = sum(saved[p].size for p in saved.files if proof.reads(p, 1) and not p.startswith(EMBEDDING)
                     and "/conv" not in p)
    kernels = sum(int(((o > 0) & (o <= 1)).sum()) for n, o in pruning.load(proof_dir / "Models" / "ret_t1")[0].items()
                  if n != EMBEDDING)
    assert found.compared == others + kernels + int((owner == 1).sum())  # T1's entries of the table, not all


def test_one_flipped_bit_of_an_embedding_entry_t1_owns_fails_its_proof(proof_dir):
    _, owner = table_and_owner(proof_dir, "ret_t1")
    where = tuple(np.argwhere(owner == 1)[0])
    rewrite_weights(proof_dir / "Models" / "ret_t3", flip_embedding_bit(where))
    found = proof.prove_stage(1, "ret_t3", proof_dir / "Models")
    assert found.compared - found.identical == 1 and found.first_difference.startswith(EMBEDDING)


def test_a_flipped_bit_of_an_embedding_entry_t1_does_not_own_leaves_its_proof_intact(proof_dir):
    _, owner = table_and_owner(proof_dir, "ret_t3")
    where = tuple(np.argwhere(owner == 3)[0])
    rewrite_weights(proof_dir / "Models" / "ret_t3", flip_embedding_bit(where))
    assert proof.prove_stage(1, "ret_t3", proof_dir / "Models").holds
    assert not proof.prove_stage(3, "ret_t3", proof_dir / "Models", reference="ret_t1").holds


@pytest.mark.parametrize("task", [1, 2, 3])
def test_held_out_scores_are_those_of_a_numpy_forward_pass_of_the_files(owned_chain, delta_chain, synthetic_dir,
                                                                         task):
    for out in (owned_chain, delta_chain):
        directory = out / "Models" / "ret_t3"
        config = {**json.loads((directory / "config.json").read_text()), "data_dir": str(synthetic_dir)}
        data = data_loader.load_task_data(task, config, data_loader.Vocab.load(directory / "vocab.json"))
        tokens = data.test_inputs()[0][:16]
        model = assembly.restore(directory, "ret_t3")[0]
        found = keras.ops.convert_to_numpy(model.task_scores(tokens, task))
        np.testing.assert_allclose(found, reference.checkpoint_scores(directory, tokens, task), rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- a low-rank addition per later task

def test_an_item_delta_is_read_by_its_own_task_alone(delta_chain):
    with np.load(delta_chain / "Models" / "ret_t3" / "weights.npz") as saved:
        deltas = sorted({p.split("/")[0] for p in saved.files if p.startswith("delta_t")})
        rows = saved["delta_t2/rows"]
    assert deltas == ["delta_t2", "delta_t3"] and np.abs(rows).max() > 0  # trained from zero
    for task in (1, 2):
        assert proof.prove_stage(task, "ret_t3", delta_chain / "Models").holds


# ---------------------------------------------------------------- run_all.py --extension

def test_each_extension_setting_goes_to_the_stages_it_belongs_to():
    given = run_all.parse_extension("embedding=owned,task_dropout=0.3")
    assert given == {"embedding": "owned", "task_dropout": 0.3}
    first, later, head, retrain = (presets.overrides(name, "quick", extension=given)
                                   for name in ("tp_t1", "tp_t2", "tp_t4", "ret_t4"))
    assert first["embedding"] == "owned" and "pooling" not in first and "task_dropout" not in first
    assert "embedding" not in later and "pooling" not in later and later["delta_rank"] == 8
    assert head["pooling"] == presets.EXTENSION["pooling"] and head["task_dropout"] == 0.3
    assert "pooling" not in retrain and retrain["task_dropout"] == 0.3  # a retrain keeps its head
    assert "embedding" not in presets.overrides("tp_t1", "quick")  # off without --extension


def test_the_extension_is_refused_for_other_methods_and_settings():
    with pytest.raises(settings.ConfigError, match="an extension of Conure"):
        presets.overrides("finall_t2", "quick", extension={})
    with pytest.raises(run_all.argparse.ArgumentTypeError, match="a setting one of"):
        run_all.parse_extension("learning_rate=0.1")


# ---------------------------------------------------------------- heads that pool every position

@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_a_pooled_head_gives_the_same_answer_with_more_left_padding(pooling):
    config = {"precision": "float32", "seed": 0, "channels": 8, "dilations": [1, 2], "kernel_size": 3}
    model = assembly.build_model(30, config, [{"task": 1, "n_targets": 30, "l2": 0.0},
                                              {"task": 4, "n_targets": 3, "l2": 0.0, "pooling": pooling}])
    if pooling == "attention":
        model.head(4).query.assign(np.linspace(-1, 1, 8).astype(np.float32))
    items = np.random.default_rng(0).integers(3, 30, size=(4, 12))
    reach = model.receptive_field
    padded = {n: np.concatenate([np.full((4, n), PAD), items, np.full((4, 1), SEP)], axis=1).astype(np.int32)
              for n in (reach, reach + 25)}  # every item's receptive field is full of padding either way
    short, long = (keras.ops.convert_to_numpy(model.task_scores(t, 4, "full")) for t in padded.values())
    np.testing.assert_allclose(short, long, rtol=1e-5, atol=1e-6)
    hidden = keras.ops.convert_to_numpy(model.hidden(padded[reach], 4, "full"))
    assert np.abs(hidden[:, :reach]).min() > 0  # the padding positions carry values the head must leave out


# ---------------------------------------------------------------- the release's behaviour, as before

BEFORE = "5aa1915"  # the code just before these settings existed
RELEASE_CHAIN = ("tp_t1", "ret_t1", "tp_t2", "ret_t2", "tp_t3", "ret_t3", "tp_t4", "ret_t4")
RUN_CHAIN = """
import json, runpy, sys
from pathlib import Path
sys.path.insert(0, ".")
import stage
data_dir, out_dir, names, tiny = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4].split()
hashes = {}
for name in names:
    script = Path(f"conure_{name}.py")
    found = runpy.run_path(str(script)) if script.exists() else {}  # the block, as either version reads it
    block = {k: v for k, v in found.items() if not k.startswith("_") and isinstance(v, (bool, int, float, str, list))}
    argv = [f"--data_dir={data_dir}", f"--out_dir={out_dir}"] + [a for a in tiny if name == "tp_t1" or "=[" not in a
                                                                  and not a.startswith("--channels")]
    hashes[name] = stage.run_stage(name, *stage.make_config(name, block, argv))["scores_sha256"]
print(json.dumps(hashes))
"""


def release_hashes(code_dir, synthetic_dir, out_dir):
    import subprocess
    import sys

    from conftest import TINY

    done = subprocess.run([sys.executable, "-c", RUN_CHAIN, str(synthetic_dir), str(out_dir), ",".join(RELEASE_CHAIN),
                           " ".join(TINY)], cwd=code_dir, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_release_defaults_score_as_before_these_settings(synthetic_dir, tmp_path):
    import io
    import subprocess
    import tarfile

    root = stage.Path(stage.__file__).parent
    try:
        archive = subprocess.run(["git", "archive", BEFORE], cwd=root, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"needs the repository's history (git, commit {BEFORE})")
    with tarfile.open(fileobj=io.BytesIO(archive)) as files:
        files.extractall(tmp_path / "before", filter="data")
    before = release_hashes(tmp_path / "before", synthetic_dir, tmp_path / "out_before")
    now = release_hashes(root, synthetic_dir, tmp_path / "out_now")
    assert now == before and len(set(now.values())) > 1


# ---------------------------------------------------------------- a chosen configuration with the full softmax

@pytest.fixture(scope="module")
def softmax_chain(synthetic_dir, tmp_path_factory):
    """T1-T4 at an extension configuration whose later item tasks train with the full softmax."""
    out = tmp_path_factory.mktemp("softmax")
    for name in CHAIN + ("tp_t4", "ret_t4"):
        settings = presets.extension_settings(name, given={"pooling": "mean", "item_loss": "softmax"})
        run_stage(name, synthetic_dir, out, *(f"--{k}={v}" for k, v in settings.items()), "--epochs=2",
                  "--learning_rate=3e-3")
    return out


def test_a_softmax_configurations_later_stages_leave_every_earlier_task_bit_identical(softmax_chain, synthetic_dir):
    import evaluate

    for name, softmax in (("tp_t2", True), ("ret_t3", True), ("tp_t4", False)):  # the item loss: item tasks only
        assert json.loads((softmax_chain / "Models" / name / "config.json").read_text())["full_softmax"] is softmax
    for task, own in ((1, "ret_t1"), (2, "ret_t2"), (3, "ret_t3")):
        assert proof.prove_stage(task, "ret_t4", softmax_chain / "Models").holds
        later = evaluate.evaluate_task(task, "ret_t4", synthetic_dir, softmax_chain)
        assert later["scores_sha256"] == json.loads((softmax_chain / "Results" / f"{own}.json").read_text())[
            "scores_sha256"]
