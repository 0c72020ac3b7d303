"""HAT and TERACON: the gates and their annealing, HAT's protection of earlier tasks, TERACON's
retention loss and relation weights, and how much each forgets beside SinMoAll and Conure."""
import json
import math
import shutil

import keras
import numpy as np
import pytest

import evaluate
import export
import fit
import gates
import hat
import predict
import stage
import tasks
import teracon
from conftest import run_stage
from data_loader import SEP

ARCH = ["--channels=16", "--dilations=[1,2]"]
FIRST = ["--epochs=4", "--learning_rate=1e-3"]  # T1, then a long, fast T2 that makes SinMoAll forget
SECOND = ["--epochs=10", "--learning_rate=3e-3"]
CHAINS = {"conure": ("tp_t1", "ret_t1", "tp_t2", "ret_t2"), "sinmoall": ("sinmo_t1", "sinmoall_t2"),
          "hat": ("hat_t1", "hat_t2"), "teracon": ("teracon_t1", "teracon_t2")}


# ---------------------------------------------------------------- gates and annealing

def test_s_anneals_from_one_over_smax_over_the_epochs_batches():
    assert gates.anneal(0, 4, 400.0) == pytest.approx(1 / 400)
    assert gates.anneal(2, 4, 400.0) == pytest.approx(1 / 400 + (400 - 1 / 400) / 2)
    assert gates.anneal(3, 4, 400.0) < 400.0  # as in the released codes, the last batch stays below smax


@pytest.mark.parametrize("method", ["hat", "teracon"])
def test_a_gate_of_plus_or_minus_0_2_is_on_or_off_at_smax(method):
    gate = gates.TaskGate(1, 2, method)
    gate.build()
    gate.embedding.assign(np.array([[0.2, -0.2]], np.float32))
    on, off = keras.ops.convert_to_numpy(gate.plain(stage.METHOD_DEFAULTS[method]["smax"]))[0]
    assert abs(on - 1) < 1e-4 and off < 1e-4
    assert keras.ops.convert_to_numpy(gate.plain(1 / 400)) == pytest.approx(0.5, abs=1e-3)


def test_the_relation_gate_mixes_tanh_of_every_task_as_documented():
    relation = gates.RelationGate(n_tasks=3, n_convs=1)
    relation.build()
    weight = np.array([[[0.0, 0.0, 0.0, 0.0, 0.0]], [[0.5, -1.0, 2.0, 0.25, 3.0]], [[0.0] * 5]], np.float32)
    relation.weight.assign(weight)
    relation.bias.assign(np.array([[0.0], [0.1], [0.0]], np.float32))
    e = {1: np.array([[0.3, -0.7]], np.float32), 2: np.array([[1.0, 0.2]], np.float32),
         3: np.array([[-0.4, 0.9]], np.float32)}
    s = 2.0
    rows = [np.tanh(s * e[2]), np.tanh(s * e[1]), np.tanh(-s * e[1]), np.tanh(s * e[3]), np.tanh(-s * e[3])]
    z = sum(w * row for w, row in zip(weight[1, 0], rows)) + 0.1
    expected = 1 / (1 + np.exp(-s * z))
    found = keras.ops.convert_to_numpy(relation.gate(2, {k: keras.ops.convert_to_tensor(v) for k, v in e.items()}, s))
    np.testing.assert_allclose(found, expected, rtol=1e-6)


def test_task_embeddings_are_clamped_after_every_update():
    gate = gates.TaskGate(1, 3, "hat")
    gate.build()
    optimizer = keras.optimizers.SGD(learning_rate=100.0)
    optimizer.apply([keras.ops.ones((1, 3))], [gate.embedding])
    assert np.all(keras.ops.convert_to_numpy(gate.embedding) == -gates.EMBEDDING_LIMIT)


# ---------------------------------------------------------------- TERACON's relation weights and retention

def test_relation_ratio_follows_the_documented_formula():
    same = np.array([[0.2, 0.9, 0.5]], np.float32)
    assert float(teracon.relation_ratio(same, same)) == pytest.approx(1 - 1 / (1 + math.exp(-6)), rel=1e-5)
    orthogonal = (np.array([[1.0, 0.0]], np.float32), np.array([[0.0, 1.0]], np.float32))
    assert float(teracon.relation_ratio(*orthogonal)) == pytest.approx(0.5)
    two_convs = (np.array([[1.0, 0.0], [1.0, 1.0]], np.float32), np.array([[0.0, 1.0], [1.0, 1.0]], np.float32))
    assert float(teracon.relation_ratio(*two_convs)) == pytest.approx(1 - (0.5 + 1 / (1 + math.exp(-6))) / 2)


def two_task_model(seed=0):
    config = {"precision": "float32", "seed": seed, "channels": 8, "dilations": [1], "kernel_size": 3, "smax": 50.0}
    chain = [{"task": 1, "n_targets": 20, "l2": 0.0, "gates": "teracon"},
             {"task": 2, "n_targets": 6, "l2": 0.0, "gates": "teracon"}]
    return stage.build_model(20, config, chain)


@pytest.fixture
def retention_batch():
    rng = np.random.default_rng(0)
    tokens = np.concatenate([rng.integers(3, 20, size=(8, 12)), np.full((8, 1), SEP)], axis=1).astype(np.int32)
    return {"tokens": tokens, "s": np.float32(5.0), "retain_rows": np.arange(4, dtype=np.int32)[None, :]}


def test_retention_is_zero_when_the_model_equals_its_teacher(retention_batch):
    model = two_task_model()
    assert float(teracon.retention(model, model, retention_batch, 2)) == 0.0
    assert float(teracon.retention(model, two_task_model(), retention_batch, 2)) == 0.0  # same seed, same weights


def test_retention_grows_as_an_earlier_head_moves(retention_batch):
    teacher, losses = two_task_model(), []
    for shift in (0.0, 0.1, 0.3):
        student = two_task_model()
        student.head(1).bias.assign(student.head(1).bias + shift * np.arange(20, dtype=np.float32) / 20)
        losses.append(float(teracon.retention(student, teacher, retention_batch, 2)))
    assert losses[0] == 0.0 < losses[1] < losses[2]


# ---------------------------------------------------------------- forgetting, on the synthetic data

@pytest.fixture(scope="module")
def chains(synthetic_dir, tmp_path_factory):
    """T1 then T2 for every method of CHAINS, each in its own folder: {method: out_dir}."""
    found = {}
    for method, names in CHAINS.items():
        out = tmp_path_factory.mktemp(method)
        for name in names:
            settings = FIRST if stage.parse_stage(name)[1] == 1 else SECOND
            run_stage(name, synthetic_dir, out, *(ARCH if name in ("tp_t1", "sinmo_t1", "hat_t1", "teracon_t1") else []),
                      *settings)
        found[method] = out
    return found


def t1_scores(out, name, synthetic_dir):
    model, manifest, vocab, _, _ = stage.restore(out / "Models" / name, name)
    data = stage.load_task_data(1, {**manifest["config"], "data_dir": synthetic_dir}, vocab)
    view = stage.RULES[stage.parse_stage(name)[0]].eval_view
    return keras.ops.convert_to_numpy(model.task_scores(data.test_inputs()[0], 1, view))


def t1_drift(chains, method, synthetic_dir):
    """How far T1's held-out scores moved from its own checkpoint to the last, relative to their spread."""
    names = CHAINS[method]
    own = t1_scores(chains[method], "ret_t1" if method == "conure" else names[0], synthetic_dir)
    last = t1_scores(chains[method], names[-1], synthetic_dir)
    return float(np.linalg.norm(last - own) / np.linalg.norm(own - own.mean()))


def test_hat_and_teracon_forget_less_than_sinmoall_and_conure_nothing(chains, synthetic_dir):
    drift = {method: t1_drift(chains, method, synthetic_dir) for method in CHAINS}
    assert drift["conure"] == 0.0
    assert drift["sinmoall"] > 0.5  # a later task that moves every weight moves T1's scores
    assert drift["hat"] < 0.1 * drift["sinmoall"]
    assert drift["teracon"] < 0.5 * drift["sinmoall"]


def test_hat_barely_moves_the_weights_t1_fully_uses(chains, synthetic_dir):
    out = chains["hat"]
    first, _, _, _, _ = stage.restore(out / "Models" / "hat_t1", "hat_t1")
    second, manifest, _, _, _ = stage.restore(out / "Models" / "hat_t2", "hat_t2")
    used = hat.cumulative_gates(second, 2, manifest["config"]["smax"]) >= 1 - 1e-4  # [convs, channels]
    assert used.any()
    config, result = manifest["config"], stage.checkpoint.read_json(out / "Results" / "hat_t2.json")
    steps = result["epochs_trained"] * -(-result["n_train"] // config["batch_size"])
    bound = 10 * steps * config["learning_rate"] * 1e-4  # Adam moves a weight by about lr a step, here scaled by 1e-4
    for l, (before, after) in enumerate(zip(first.backbone.convs, second.backbone.convs)):
        moved = np.abs(keras.ops.convert_to_numpy(after.kernel) - keras.ops.convert_to_numpy(before.kernel))
        assert moved[:, :, used[l]].max(initial=0.0) < bound


def test_hat_keeps_t1s_held_out_metric(chains, synthetic_dir):
    own = stage.checkpoint.read_json(chains["hat"] / "Results" / "hat_t1.json")["MRR@5"]
    later = evaluate.evaluate_task(1, "hat_t2", synthetic_dir, chains["hat"])["MRR@5"]
    assert abs(later - own) < 0.01


# ---------------------------------------------------------------- in the pipeline: serving and resuming

@pytest.mark.parametrize("method", ["hat", "teracon"])
def test_predict_and_export_serve_every_task_of_a_gated_checkpoint(method, chains, synthetic_dir, tmp_path):
    import tensorflow as tf

    served = predict.load(chains[method] / "Models" / f"{method}_t2")
    assert [number for number, _, _ in served.tasks] == [1, 2]
    users = [line.split(",,")[0] for line in (synthetic_dir / tasks.task(2).file).read_text().splitlines()[:40]]
    path = tmp_path / "users.csv"
    path.write_text("\n".join(users) + "\n")
    predict.write_answers(served, path, tmp_path / "answers.jsonl", k=5, log=lambda *a: None)
    answers = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    export.export(served, tmp_path / "export", k=5)
    signatures = tf.saved_model.load(str(tmp_path / "export")).signatures
    tokens = tf.constant([["0"] * (100 - len(u.split(","))) + u.split(",") for u in users])
    for name in ("next_item", "clicks"):
        exported = [[item.decode() for item in row] for row in signatures[name](tokens=tokens)["items"].numpy()]
        assert exported == [answer[name]["items"] for answer in answers]


def test_a_teracon_stage_interrupted_resumes_to_the_same_weights(chains, synthetic_dir, tmp_path, monkeypatch):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    for out in (whole, broken):
        shutil.copytree(chains["teracon"] / "Models" / "teracon_t1", out / "Models" / "teracon_t1")
    settings = ["--epochs=3", "--save_every=3", "--eval_every=0"]
    run_stage("teracon_t2", synthetic_dir, whole, *settings)

    class Crash(Exception):
        pass

    save = fit.Snapshots.save

    def save_then_crash(self, *args, **kwargs):
        save(self, *args, **kwargs)
        raise Crash

    monkeypatch.setattr(fit.Snapshots, "save", save_then_crash)
    with pytest.raises(Crash):
        run_stage("teracon_t2", synthetic_dir, broken, *settings)
    monkeypatch.undo()
    position = json.loads((broken / "Models" / ".teracon_t2.resume" / "manifest.json").read_text())["position"]
    assert (position["epoch"], position["step"]) == (0, 3)
    run_stage("teracon_t2", synthetic_dir, broken, *settings)
    with np.load(whole / "Models" / "teracon_t2" / "weights.npz") as a, \
            np.load(broken / "Models" / "teracon_t2" / "weights.npz") as b:
        assert a.files == b.files and all(np.array_equal(a[name], b[name]) for name in a.files)
