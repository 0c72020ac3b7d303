"""HAT and TERACON: the gates and their annealing, HAT's protection of earlier tasks, TERACON's
retention loss and relation weights, and how much each forgets beside SinMoAll and Conure."""
import json
import math
import shutil

import keras
import numpy as np
import pytest

import assembly
import data_loader
import evaluate
import export
import fit
import gates
import hat
import methods
import predict
import presets
import proof
import run_all
import settings
import stage
import tasks
import teracon
import trainer
from conftest import rewrite_weights, run_stage
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
    on, off = keras.ops.convert_to_numpy(gate.plain(methods.RULES[method].defaults["smax"]))[0]
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


# ---------------------------------------------------------------- HAT's update of the gate embeddings

def released_gate_step(e, grad_e, other_grad, s, smax, clip):
    """HAT's src/approaches/hat.py on one embedding, in numpy: compensate, clip the global norm, SGD, clamp."""
    e, grad_e = e.astype(np.float64), grad_e.astype(np.float64)
    grad_e = grad_e * smax / s * (np.cosh(np.clip(s * e, -50, 50)) + 1) / (np.cosh(e) + 1)
    norm = np.sqrt(np.sum(grad_e ** 2) + np.sum(other_grad.astype(np.float64) ** 2))
    grad_e = grad_e * min(1.0, clip / (norm + 1e-6))
    return np.clip(e - hat.LEARNING_RATE * grad_e, -gates.EMBEDDING_LIMIT, gates.EMBEDDING_LIMIT)


@pytest.mark.parametrize("s, clip", [(0.3, hat.CLIP_NORM), (150.0, hat.CLIP_NORM), (2.0, 0.5)])
def test_hats_gate_update_is_the_released_formula(s, clip):
    e0 = np.array([[0.01, -0.2, 0.3, -5.9, 0.002, 0.05]], np.float32)
    grad_e = np.array([[0.5, -2.0, 0.03, 0.0, -7.0, 4.0]], np.float32)  # d loss / d e, hand-set
    other_grad = np.array([3.0, -4.0], np.float32)
    e, other = keras.Variable(e0), keras.Variable(np.zeros(2, np.float32))

    def loss(batch):  # linear in both variables: its gradients are the hand-set ones
        return keras.ops.sum(e * grad_e) + keras.ops.sum(other * other_grad)

    step = trainer.TrainStep(loss, [other, e], [other, e], trainer.adam(1e-3),
                             side_rules={id(e): hat.GateUpdate(smax=400.0)}, clip_norm=clip)
    step({"s": np.float32(s)})
    expected = released_gate_step(e0, grad_e, other_grad, s, 400.0, clip)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(e), expected, rtol=1e-6, atol=1e-6)
    if s == 150.0:
        assert np.abs(expected).max() == gates.EMBEDDING_LIMIT  # the clamp was exercised


def gated_toy(update, seed):
    """A logistic regression whose 8 inputs pass through one HAT gate each; only inputs 0-3 carry
    the label. The gates of 0-3 start closed (e < 0), the others open. Trained for 6 epochs of 50
    batches with s annealed per epoch and HAT's regulariser; returns the gates at smax."""
    keras.utils.set_random_seed(seed)
    rng, smax, steps = np.random.default_rng(seed), 400.0, 50
    x = rng.normal(size=(steps * 32, 8)).astype(np.float32)
    y = (x[:, :4].sum(axis=1) > 0).astype(np.float32)
    gate = gates.TaskGate(1, 8, "hat")
    gate.build()
    start = np.abs(rng.normal(size=(1, 8))).astype(np.float32) + 0.5
    start[0, :4] *= -1
    gate.embedding.assign(start)
    w, b = keras.Variable(np.ones(8, np.float32)), keras.Variable(np.zeros((), np.float32))

    def loss(batch):
        a = gate.plain(batch["s"])[0]
        logit = keras.ops.sum(batch["x"] * a * w, axis=1) + b
        fit = keras.ops.mean(keras.ops.binary_crossentropy(batch["y"], logit, from_logits=True))
        return fit + 0.75 * keras.ops.mean(a)

    rules = {id(gate.embedding): hat.GateUpdate(smax)} if update == "hat" else None
    step = trainer.TrainStep(loss, [w, b, gate.embedding], [w, b, gate.embedding], trainer.adam(1e-2),
                             side_rules=rules, clip_norm=hat.CLIP_NORM if rules else None)
    for _ in range(6):
        order = rng.permutation(len(x))
        for i in range(steps):
            rows = order[i * 32:(i + 1) * 32]
            step({"x": x[rows], "y": y[rows], "s": np.float32(gates.anneal(i, steps, smax))})
    return keras.ops.convert_to_numpy(gate.plain(smax))[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_hats_gates_open_where_the_signal_is_and_close_elsewhere_whatever_their_start(seed):
    served = gated_toy("hat", seed)
    assert np.all(served[:4] > 0.5), served
    assert np.sum(served[4:] < 0.5) >= 3, served


def test_on_adam_at_a_stages_rate_the_gates_keep_the_side_they_started_on():
    served = gated_toy("adam", 0)  # the contrast: what the update above is for
    assert np.all(served[:4] < 0.5), served


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
             {"task": 2, "n_targets": 6, "l2": 0.0, "gates": "teracon", "head_bias": True}]
    return assembly.build_model(20, config, chain)


@pytest.fixture
def retention_batch():
    rng = np.random.default_rng(0)
    tokens = np.concatenate([rng.integers(3, 20, size=(8, 12)), np.full((8, 1), SEP)], axis=1).astype(np.int32)
    return {"tokens": tokens, "s": np.float32(5.0), "retain_rows": np.arange(4, dtype=np.int32)[None, :],
            "retain_counts": np.array([4], np.int32), "retain_weights": np.array([1.0], np.float32)}


def three_task_pair():
    """(student, teacher) after T2: the teacher holds T1-T2, the student T1-T3 (TERACON's stage 3)."""
    config = {"precision": "float32", "seed": 0, "channels": 8, "dilations": [1], "kernel_size": 3, "smax": 50.0}
    chain = [{"task": k, "n_targets": n, "l2": 0.0, "gates": "teracon", "head_bias": k > 1}
             for k, n in ((1, 20), (2, 6), (3, 4))]
    return assembly.build_model(20, config, chain), assembly.build_model(20, config, chain[:2])


def test_the_relation_ratio_starts_at_0_9_and_each_batch_uses_the_one_before_it():
    student, teacher = three_task_pair()
    retention = teracon.Retention(student, teacher, 3, batch_size=1024, item_limit=0)
    first = retention(np.random.default_rng(0), np.float32(2.0))
    assert list(first["retain_counts"]) == [921, 921] and first["retain_rows"].shape == (2, 1024)
    np.testing.assert_allclose(first["retain_weights"], [0.5, 0.5])
    new_gates = student.task_gates(3, 2.0)  # the gates as they were during the first batch
    expected = np.array([float(teracon.relation_ratio(teacher.task_gates(i, 2.0), new_gates)) for i in (1, 2)])
    gate = student.gates["3"].embedding
    gate.assign(-gate)  # the step after the first batch moves the new task's gate
    second = retention(np.random.default_rng(1), np.float32(9.0))
    np.testing.assert_array_equal(second["retain_counts"], np.maximum(np.floor(1024 * expected), 1))
    np.testing.assert_allclose(second["retain_weights"], expected / expected.sum(), rtol=1e-6)
    assert second["retain_rows"].shape == (2, 512)  # every ratio after the first is at most 0.5
    assert not np.allclose(retention.state()["ratios"], expected)  # the third batch gets the moved gate's


def test_teracons_later_heads_have_a_bias_that_their_retained_logits_include(retention_batch):
    model, tokens = two_task_model(), retention_batch["tokens"]
    before = keras.ops.convert_to_numpy(teracon.logits(model, tokens, 2, 5.0))
    model.head(2).bias.assign(model.head(2).bias + 0.5)
    after = keras.ops.convert_to_numpy(teracon.logits(model, tokens, 2, 5.0))
    np.testing.assert_allclose(after - before, 0.5, rtol=1e-5)


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
            settings = FIRST if methods.parse_stage(name)[1] == 1 else SECOND
            run_stage(name, synthetic_dir, out, *(ARCH if name in ("tp_t1", "sinmo_t1", "hat_t1", "teracon_t1") else []),
                      *settings)
        found[method] = out
    return found


def t1_scores(out, name, synthetic_dir):
    model, manifest, vocab, _, _ = assembly.restore(out / "Models" / name, name)
    data = data_loader.load_task_data(1, {**manifest["config"], "data_dir": synthetic_dir}, vocab)
    view = methods.RULES[methods.parse_stage(name)[0]].eval_view
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
    first, _, _, _, _ = assembly.restore(out / "Models" / "hat_t1", "hat_t1")
    second, manifest, _, _, _ = assembly.restore(out / "Models" / "hat_t2", "hat_t2")
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


# ---------------------------------------------------------------- gates in the stages and in the forgetting count

def test_a_hat_stage_moves_its_gates_further_than_adam_could(chains):
    model, manifest, _, _, _ = assembly.restore(chains["hat"] / "Models" / "hat_t1", "hat_t1")
    config, result = manifest["config"], stage.checkpoint.read_json(chains["hat"] / "Results" / "hat_t1.json")
    gate = model.gates["1"]
    moved = np.abs(keras.ops.convert_to_numpy(gate.embedding) - keras.ops.convert_to_numpy(gate.initial))
    steps = result["epochs_trained"] * (result["n_train"] // config["batch_size"])
    assert moved.max() > 10 * steps * config["learning_rate"]  # beyond Adam's reach at the stage's rate
    recorded = result["gates"]["T1"]
    assert {k: recorded[k] for k in gates.statistics(model, 1)} == pytest.approx(gates.statistics(model, 1))
    assert recorded["regulariser"] == pytest.approx(recorded["open"], abs=0.01)  # T1's: its mean gate, saturated
    assert result["gates"]["T1"]["sign_changed"] > 0


def test_teracon_gates_conv1_after_its_layernorm_and_relu(chains):
    model = assembly.restore(chains["teracon"] / "Models" / "teracon_t2", "teracon_t2")[0]
    assert model.gate_position == "activation"
    block, tokens = model.backbone.blocks[0], np.array([[3, 4, 5, 6, 7, 8]], np.int32)
    x = model.backbone.embedding(tokens)
    closed = np.ones((2, model.backbone.channels), np.float32)
    closed[0, 0] = 0.0  # conv1's channel 0 closed: conv2 must not see it
    h = keras.ops.relu(block.norm2(block.conv1(keras.ops.relu(block.norm1(x))))) * closed[0]
    expected = x + block.conv2(h)
    found = block(x, gates=(closed[0], closed[1]), gate_position="activation")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(found), keras.ops.convert_to_numpy(expected), rtol=1e-6)


def closed_channel_pair(chains, tmp_path):
    """hat_t1 copied twice with every gate of T1 open but conv 1's channel 0, which is closed:
    (reference, later) folders, ready to be tampered with."""
    folders = []
    for name in ("reference", "later"):
        folder = tmp_path / name / "Models" / "hat_t1"
        shutil.copytree(chains["hat"] / "Models" / "hat_t1", folder)

        def close(weights):
            embedding = np.full_like(weights["gate_t1/embedding"], gates.EMBEDDING_LIMIT)
            embedding[1, 0] = -gates.EMBEDDING_LIMIT
            weights["gate_t1/embedding"] = embedding
        rewrite_weights(folder, close)
        folders.append(folder)
    return folders


def test_the_forgetting_count_leaves_out_the_weights_of_a_closed_channel(chains, tmp_path):
    reference, later = closed_channel_pair(chains, tmp_path)
    masks = proof.gated_reads(1, [reference, later])
    model = assembly.restore(reference, "hat_t1")[0]
    conv = model.backbone.convs[1]
    kernel = keras.ops.convert_to_numpy(conv.kernel)
    assert int(masks[conv.path].sum()) == kernel.size - kernel.shape[0] * kernel.shape[1]  # output channel 0 out
    whole = proof.prove(1, reference, later, owned_only=False)
    gated = proof.prove(1, reference, later, owned_only=False, read_masks=masks)
    assert whole.compared - gated.compared == kernel.shape[0] * kernel.shape[1]

    def change(weights):  # one weight writing the closed channel, one writing an open one
        weights[f"{conv.path}/kernel"][0, 0, 0] += 1.0
        weights[f"{conv.path}/kernel"][0, 0, 1] += 1.0
    rewrite_weights(later, change)
    after = proof.prove(1, reference, later, owned_only=False, read_masks=masks)
    assert after.compared - after.identical == 1


def test_behind_teracons_conv1_gate_a_closed_channel_is_no_input_of_conv2():
    model = two_task_model()
    model.relation = None  # T1 served through its plain gate: sigmoid(s e)
    embedding = np.full((2, 8), gates.EMBEDDING_LIMIT, np.float32)
    embedding[0, 3] = -gates.EMBEDDING_LIMIT
    model.gates["1"].embedding.assign(embedding)
    (in1, out1), (in2, out2) = gates.open_channels(model, 1)
    assert in1.all() and not out1[3] and out1.sum() == 7
    assert not in2[3] and in2.sum() == 7 and out2.all()


# ---------------------------------------------------------------- HAT's released training (hat.RELEASED_TRAINING)

class OneLayer:
    """A "model" of a weight vector and a gate embedding, its loss their sum: every SGD step
    moves each entry by minus the learning rate in force."""

    def __init__(self):
        self.weight = keras.Variable(np.zeros(3, np.float32), name="weight")
        self.gate = keras.Variable(np.zeros(2, np.float32), name="gate")
        self.trainable_variables = self.variables = [self.weight, self.gate]


class ThreeSteps:
    """Data of three training batches an epoch and a validation slice (whose loss is scripted)."""
    kind, n_valid, batch_size = "class", 4, 2

    def train_batches(self, config, epoch, stream=0):
        from data_loader import Batches

        make = lambda rows, rng: {"tokens": np.zeros((len(rows), 1), np.int32)}  # noqa: E731
        return Batches(3 * self.batch_size, self.batch_size, 0, epoch, make, stream)


def test_hats_released_training_steps_sgd_on_its_schedule_over_a_hand_made_loss_curve(tmp_path):
    # best at epochs 2 and 8; every 5 epochs without a lower loss divide the rate by 3, until it would
    # fall below 1e-4: 0.05 (epochs 1-7), /3 (8-13), /9, /27, /81 (every 5 epochs), /243 (29-33), then stop
    curve = [1.0, 0.9] + [0.95] * 5 + [0.8] + [0.95] * 25 + [0.5] * 10
    rates = [0.05] * 7 + [0.05 / 3] * 6 + [0.05 / 3 ** k for k in (2, 3, 4, 5) for _ in range(5)]
    config = {**settings.DEFAULTS, **hat.RELEASED_TRAINING, "valid": 0.1, "save_every": 0, "verbose": 0, "xla": False}
    model, losses, moved = OneLayer(), iter(curve), []

    def evaluate(part):
        moved.append((keras.ops.convert_to_numpy(model.weight).copy(), keras.ops.convert_to_numpy(model.gate).copy()))
        return {"accuracy": 0.0, "scores_sha256": "scripted"}

    history = fit.train(model, lambda batch: keras.ops.sum(model.weight) + keras.ops.sum(model.gate), ThreeSteps(),
                        config, evaluate, lambda *a: None, fit.Snapshots(tmp_path / "snapshot", "test"),
                        extras=lambda epoch, step, steps: {"s": np.float32(1.0)},
                        side_rules={id(model.gate): hat.GateUpdate(smax=1.0)}, valid_loss=lambda: next(losses))
    assert (history["epochs_trained"], history["best_epoch"]) == (33, 8)
    assert [point["loss"] for point in history["valid_curve"]] == curve[:33]
    weights = [np.zeros(3)] + [w for w, _ in moved]
    gate_values = [np.zeros(2)] + [g for _, g in moved]
    for epoch, rate in enumerate(rates):  # SGD: three steps of the rate in force, for the backbone and the gate
        np.testing.assert_allclose(weights[epoch] - weights[epoch + 1], 3 * rate, rtol=1e-4)
        np.testing.assert_allclose(gate_values[epoch] - gate_values[epoch + 1], 3 * rate, rtol=1e-4)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model.weight), moved[7][0])  # epoch 8's, the lowest


def test_hats_released_training_is_hats_stages_own(synthetic_dir, tmp_path, capsys):
    released = presets.overrides("hat_t2", "quick", hat_optimizer="sgd")
    assert {k: released[k] for k in hat.RELEASED_TRAINING} == hat.RELEASED_TRAINING
    assert "optimizer" not in presets.overrides("tp_t2", "quick", hat_optimizer="sgd")
    with pytest.raises(SystemExit) as stopped:
        run_all.main([f"--data_dir={synthetic_dir}", f"--out_dir={tmp_path / 'out'}", "--method=conure", "--tasks=1",
                      "--hat_optimizer=sgd"])
    assert stopped.value.code == 2 and "a setting of HAT's stages" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before any work


@pytest.mark.parametrize("setting", ["--shared_lr_scale=0.3", "--task_dropout=0.3", "--pooling=mean"])
@pytest.mark.parametrize("name", ["hat_t2", "teracon_t2", "finall_t2"])
def test_conures_head_settings_are_refused_on_another_methods_stage_before_any_work(name, setting, synthetic_dir,
                                                                                    tmp_path):
    # no start checkpoint in tmp_path: the refusal comes before the stage reads anything
    with pytest.raises(settings.ConfigError, match=rf"{setting[2:].split('=')[0]}=.*a setting of Conure's stages"):
        run_stage(name, synthetic_dir, tmp_path, setting)
    assert not (tmp_path / "Models").exists()
