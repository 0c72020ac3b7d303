"""predict.py and export.py on tiny synthetic checkpoints: the same answers as evaluate.py's ranking,
the same answers from the SavedModel in a process without the project's code, and bad input."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

import data_loader
import evaluate
import export
import metrics
import predict
import tasks
from conftest import ROOT, run_stage

NAMES = {number: tasks.task(number).name for number in range(1, len(tasks.TASKS) + 1)}

# Loads SavedModels, calls every signature on a token matrix and saves the outputs; run in a fresh
# interpreter outside the repository, it prints which of the project's modules it imported (none).
LOADER = """
import json, sys
from pathlib import Path
import numpy as np
import tensorflow as tf
root, tokens, *exports = sys.argv[1:]
tokens = tf.constant(np.load(tokens))
for export_dir, saved in zip(exports[::2], exports[1::2]):
    outputs = {}
    for name, signature in tf.saved_model.load(export_dir).signatures.items():
        for key, value in signature(tokens=tokens).items():
            value = value.numpy()
            outputs[f"{name}/{key}"] = value.astype(bytes).astype(str) if value.dtype == object else value
    np.savez(saved, **outputs)
project = {path.stem for path in Path(root).glob("*.py")}
print(json.dumps(sorted(project & set(sys.modules))))
"""

JAX_RUN = """
import sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
from conftest import run_stage
import predict
data, out, users = sys.argv[2:5]
run_stage("tp_t1", data, out)
run_stage("ret_t1", data, out, "--epochs=0")
predict.main([f"--out_dir={out}", "--stage=ret_t1", f"--input={users}", f"--out={out}/predictions.jsonl", "--k=5"])
"""


@pytest.fixture(scope="module")
def out(t1_run, synthetic_dir, tmp_path_factory):
    """T1 trained (t1_run), T2-T4 pruned and stored untrained, and a FineSmax and a SinMoAll T2 beside them."""
    out = tmp_path_factory.mktemp("predict")
    shutil.copytree(t1_run[0], out, dirs_exist_ok=True)
    for name in ("tp_t2", "ret_t2", "tp_t3", "ret_t3", "tp_t4", "ret_t4"):
        run_stage(name, synthetic_dir, out, "--epochs=0")
    run_stage("sinmo_t1", synthetic_dir, out, "--channels=16", "--dilations=[1,2]", "--epochs=0")
    run_stage("finesmax_t2", synthetic_dir, out, "--epochs=0")
    run_stage("sinmoall_t2", synthetic_dir, out, "--epochs=0")
    return out


def lines_of(synthetic_dir, number):
    return (synthetic_dir / tasks.task(number).file).read_text().splitlines()


def json_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# Each format's own reader, as a user would load the file.
READERS = {"jsonl": json_lines, "csv": lambda path: pd.read_csv(path, dtype=str, keep_default_na=False),
           "parquet": pd.read_parquet}


def run_predict(out, lines, tmp_path, *argv, name="predictions.jsonl", read=json_lines):
    """predict.main on `lines`; returns (what `read` reads from the output, summary)."""
    users = tmp_path / "users.csv"
    users.write_text("\n".join(lines) + "\n")
    target = tmp_path / name
    summary = predict.main([f"--out_dir={out}", f"--input={users}", f"--out={target}", *argv])
    return read(target), summary


def float32s(values):
    return [float(np.float32(value)) for value in values]


def as_float32(record):
    """A JSON lines record with its scores and probabilities as the float32 values they print."""
    found = dict(record)
    for name, answer in record.items():
        if isinstance(answer, dict) and "items" in answer:
            found[name] = {"items": answer["items"], "scores": float32s(answer["scores"])}
        elif isinstance(answer, dict):
            labels = answer["probabilities"]
            found[name] = {"label": answer["label"], "probabilities": dict(zip(labels, float32s(labels.values())))}
    return found


def present(cell):
    """False for an empty place: null (Parquet) or an empty cell (CSV)."""
    return not (pd.isna(cell) or cell == "")


def records_of_table(table):
    """The JSON lines records a CSV or Parquet table holds, by docs/serving.md's column layout."""
    records = []
    for row in table.to_dict("records"):
        record = {"line": int(row["line"]), "unknown_tokens": int(row["unknown_tokens"])}
        for name in NAMES.values():
            places = [i for i in range(1, len(row)) if f"{name}_{i}" in row]
            labels = [column[len(f"{name}_p_"):] for column in row if column.startswith(f"{name}_p_")]
            if places:
                found = [i for i in places if present(row[f"{name}_{i}"])]
                record[name] = {"items": [row[f"{name}_{i}"] for i in found],
                                "scores": float32s(row[f"{name}_score_{i}"] for i in found)}
            elif labels:
                record[name] = {"label": row[name],
                                "probabilities": dict(zip(labels, float32s(row[f"{name}_p_{x}"] for x in labels)))}
        records.append(record)
    return records


def token_matrix(lines, length=100):
    """What a serving client sends: each user's tokens, left-padded with "0"."""
    rows = [line.split(",,")[0].split(",")[-length:] for line in lines]
    return np.array([["0"] * (length - len(row)) + row for row in rows])


def load_in_fresh_process(exports, lines, folder):
    """{export folder: {signature/output: array}} from LOADER, in a fresh interpreter."""
    np.save(folder / "tokens.npy", token_matrix(lines))
    saved = {export_dir: folder / f"served_{i}.npz" for i, export_dir in enumerate(exports)}
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KERAS_BACKEND")}
    done = subprocess.run([sys.executable, "-c", LOADER, str(ROOT), str(folder / "tokens.npy"),
                           *(str(p) for pair in saved.items() for p in pair)], cwd=folder, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == [], "the loader imported the project's code"
    answers = {}
    for export_dir, path in saved.items():
        with np.load(path) as outputs:
            answers[export_dir] = {key: outputs[key] for key in outputs.files}
    return answers


def serving_users(synthetic_dir):
    """Users of every shape: full lines with a target part, a short line, a line with an unknown token."""
    lines = lines_of(synthetic_dir, 4)[:12]
    return lines + ["3,5,8", "never-seen," + lines[0].split(",", 1)[1]]


# ----------------------------------------------------------------------------- the same answers


def held_out(synthetic_dir, number, out):
    """Held-out input lines of a task, as evaluate.py splits them, and the true answer tokens."""
    manifest = json.loads((out / "Models" / "ret_t4" / "manifest.json").read_text())
    config = {**manifest["config"], "data_dir": str(synthetic_dir)}
    raw = lines_of(synthetic_dir, number)
    if number == 1:
        test = data_loader.split(len(raw), config["split_seed"], config["holdout"], "T1")[1]
        return [raw[i].rsplit(",", 1)[0] for i in test], [raw[i].rsplit(",", 1)[1] for i in test]
    vocab = data_loader.Vocab.load(out / "Models" / "ret_t4" / "vocab.json")
    data = data_loader.load_task_data(number, config, vocab)
    return [raw[i] for i in data.test_lines], [data.targets.tokens[t] for t in data.test_targets]


@pytest.mark.parametrize("number", [1, 2, 3])
def test_top_k_is_the_ranking_evaluate_scores(number, out, synthetic_dir, tmp_path):
    lines, truth = held_out(synthetic_dir, number, out)
    length = 99 if number == 1 else 100  # evaluate.py feeds T1 the first 99 of 100 tokens
    records, _ = run_predict(out, lines, tmp_path, "--stage=ret_t4", f"--tasks={number}", "--k=5",
                             f"--length={length}")
    items = [record[NAMES[number]]["items"] for record in records]
    ranks = [found.index(true) if true in found else 5 for found, true in zip(items, truth)]
    scored = evaluate.evaluate_task(number, "ret_t4", synthetic_dir, out)
    assert metrics.ranking_metrics(ranks) == {k: scored[k] for k in ("MRR@5", "HR@5", "NDCG@5")}
    assert len(records) == scored["n_eval"] and scored["HR@5"] > 0


def test_label_is_the_argmax_evaluate_scores(out, synthetic_dir, tmp_path):
    lines, truth = held_out(synthetic_dir, 4, out)
    records, _ = run_predict(out, lines, tmp_path, "--stage=ret_t4", "--tasks=4")
    labels = [record["gender"]["label"] for record in records]
    assert np.mean(np.array(labels) == np.array(truth)) == evaluate.evaluate_task(4, "ret_t4", synthetic_dir, out)[
        "accuracy"]
    for record in records:
        probabilities = record["gender"]["probabilities"]
        assert max(probabilities, key=probabilities.get) == record["gender"]["label"]
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-6)


@pytest.fixture(scope="module")
def json_answers(out, synthetic_dir, tmp_path_factory):
    """ret_t4's answers (k=3) for serving_users, written to a .jsonl file and read as JSON lines."""
    records, _ = run_predict(out, serving_users(synthetic_dir), tmp_path_factory.mktemp("jsonl"), "--stage=ret_t4",
                             "--k=3")
    return [as_float32(record) for record in records]


# (output file name, extra arguments, the format the file must hold)
WRITTEN = {
    ".csv": ("predictions.csv", [], "csv"),
    ".parquet": ("predictions.parquet", [], "parquet"),
    ".PARQUET": ("predictions.PARQUET", [], "parquet"),
    "--format=jsonl": ("predictions.txt", ["--format=jsonl"], "jsonl"),
    "--format=csv": ("predictions.txt", ["--format=csv"], "csv"),
    "--format=parquet": ("predictions", ["--format=parquet"], "parquet"),
    "--format=csv agreeing with .csv": ("predictions.csv", ["--format=csv"], "csv"),
}


@pytest.mark.parametrize("case", sorted(WRITTEN))
def test_each_format_reads_back_as_the_json_lines_answers(case, json_answers, out, synthetic_dir, tmp_path):
    name, argv, fmt = WRITTEN[case]
    found, _ = run_predict(out, serving_users(synthetic_dir), tmp_path, "--stage=ret_t4", "--k=3", *argv,
                           name=name, read=READERS[fmt])
    records = found if fmt == "jsonl" else records_of_table(found)
    assert [as_float32(record) for record in records] == json_answers


def test_parquet_keeps_tokens_and_labels_as_strings_and_scores_as_float32(out, synthetic_dir, tmp_path):
    table, _ = run_predict(out, serving_users(synthetic_dir), tmp_path, "--stage=ret_t4", "--k=3",
                           name="predictions.parquet", read=pd.read_parquet)
    assert table["line"].dtype == "int64" and table["unknown_tokens"].dtype == "int64"
    assert all(pd.api.types.is_string_dtype(table[c]) for c in ("next_item_1", "likes_3", "gender"))
    assert all(table[c].dtype == "float32" for c in table.columns if "_score_" in c or "_p_" in c)


def test_parquet_in_several_row_groups_reads_back_whole(out, synthetic_dir, tmp_path, monkeypatch):
    argv = ["--stage=ret_t4", "--k=3", "--batch_size=4"]
    records, _ = run_predict(out, serving_users(synthetic_dir), tmp_path, *argv)
    monkeypatch.setattr(predict, "ROW_GROUP_BYTES", 1)  # a row group per batch of 4 users
    table, _ = run_predict(out, serving_users(synthetic_dir), tmp_path, *argv, name="predictions.parquet",
                           read=pd.read_parquet)
    assert pq.ParquetFile(tmp_path / "predictions.parquet").num_row_groups == 4
    assert records_of_table(table) == [as_float32(record) for record in records]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_places_exclude_seen_leaves_empty_read_back_as_shorter_lists(fmt, out, synthetic_dir, tmp_path):
    argv = ["--stage=ret_t4", "--tasks=1", "--k=1000", "--exclude_seen"]
    records, _ = run_predict(out, lines_of(synthetic_dir, 1)[:3], tmp_path, *argv)
    table, _ = run_predict(out, lines_of(synthetic_dir, 1)[:3], tmp_path, *argv, name=f"predictions.{fmt}",
                           read=READERS[fmt])
    places = sum(1 for column in table.columns if column.startswith("next_item_score_"))
    assert all(len(record["next_item"]["items"]) < places for record in records)
    assert records_of_table(table) == [as_float32(record) for record in records]


# An output whose format its name does not say: (name, extra arguments, the problem named).
UNSURE_OUTPUTS = {
    "unknown suffix": ("answers.xlsx", [], "unknown suffix .xlsx; known suffixes are .jsonl, .csv, .parquet"),
    "JSON, not JSON lines": ("answers.json", [], "unknown suffix .json"),
    "no suffix": ("answers", [], "no suffix"),
    "a suffix --format contradicts": ("answers.csv", ["--format=parquet"], "the suffix says csv, --format says parquet"),
}


@pytest.mark.parametrize("case", sorted(UNSURE_OUTPUTS))
def test_an_output_of_unsure_format_is_refused_before_the_model_loads(case, out, tmp_path, capsys, monkeypatch):
    name, argv, problem = UNSURE_OUTPUTS[case]
    monkeypatch.setattr(predict, "load", lambda *args: pytest.fail("the model was loaded"))
    (tmp_path / "users.csv").write_text("3,5\n")
    with pytest.raises(SystemExit) as exit_info:
        predict.main([f"--out_dir={out}", "--stage=ret_t4", f"--input={tmp_path / 'users.csv'}",
                      f"--out={tmp_path / name}", *argv])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err and f"--out={tmp_path / name}: {problem}" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users.csv"]


@pytest.fixture(scope="module")
def jax_out(synthetic_dir, tmp_path_factory):
    """T1 trained with KERAS_BACKEND=jax, and its predict.py answers (k=5) for serving_users; None without JAX."""
    if importlib.util.find_spec("jax") is None:
        return None
    folder = tmp_path_factory.mktemp("jax")
    (folder / "users.csv").write_text("\n".join(serving_users(synthetic_dir)) + "\n")
    done = subprocess.run([sys.executable, "-c", JAX_RUN, str(ROOT), str(synthetic_dir), str(folder),
                           str(folder / "users.csv")], env={**os.environ, "KERAS_BACKEND": "jax"},
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return folder


@pytest.fixture(scope="module")
def served(out, jax_out, synthetic_dir, tmp_path_factory):
    """Exports (k=5) of ret_t4 and of the JAX-trained ret_t1, called in one fresh process on serving_users."""
    folder = tmp_path_factory.mktemp("served")
    checkpoints = {"tensorflow": out / "Models" / "ret_t4"}
    if jax_out:
        checkpoints["jax"] = jax_out / "Models" / "ret_t1"
    for backend, directory in checkpoints.items():
        export.export(predict.load(directory), folder / backend, k=5)
    answers = load_in_fresh_process([folder / backend for backend in checkpoints], serving_users(synthetic_dir), folder)
    return {backend: answers[folder / backend] for backend in checkpoints}


def test_export_answers_like_predict_in_a_process_without_the_project(served, out, synthetic_dir, tmp_path):
    records, _ = run_predict(out, serving_users(synthetic_dir), tmp_path, "--stage=ret_t4", "--k=5")
    answers = served["tensorflow"]
    assert {key.split("/")[0] for key in answers} == {"next_item", "clicks", "likes", "gender", "serving_default"}
    for name in ("next_item", "clicks", "likes"):
        assert answers[f"{name}/items"].tolist() == [record[name]["items"] for record in records]
        np.testing.assert_allclose(answers[f"{name}/scores"], [record[name]["scores"] for record in records],
                                   rtol=0, atol=1e-6)
    probabilities = [list(record["gender"]["probabilities"].values()) for record in records]
    np.testing.assert_allclose(answers["gender/probabilities"], probabilities, rtol=0, atol=1e-6)
    assert answers["gender/label"].tolist() == [record["gender"]["label"] for record in records]
    assert answers["gender/classes"][0].tolist() == list(records[0]["gender"]["probabilities"])
    assert answers["clicks/unknown_tokens"].tolist() == [record["unknown_tokens"] for record in records]


def test_jax_trained_checkpoint_exports_with_jax_predict_answers(served, jax_out):
    if jax_out is None:
        pytest.skip("JAX is not installed")
    manifest = json.loads((jax_out / "Models" / "ret_t1" / "manifest.json").read_text())
    records = [json.loads(line) for line in (jax_out / "predictions.jsonl").read_text().splitlines()]
    assert manifest["backend"] == "jax"
    assert served["jax"]["next_item/items"].tolist() == [record["next_item"]["items"] for record in records]
    np.testing.assert_allclose(served["jax"]["next_item/scores"], [r["next_item"]["scores"] for r in records],
                               rtol=0, atol=1e-5)  # two backends' float32 kernels


# ----------------------------------------------------------------------------- input as documented


def test_unknown_tokens_map_to_unk_and_are_counted(out, synthetic_dir, tmp_path):
    known = lines_of(synthetic_dir, 1)[0].split(",")[-50:]
    lines = [",".join(["never-seen"] + known), ",".join(["also-unknown"] + known), ",".join(["x", "y"] + known)]
    records, summary = run_predict(out, lines, tmp_path, "--stage=ret_t4")
    assert [record["unknown_tokens"] for record in records] == [1, 1, 2]
    assert summary["unknown_tokens"] == 4 and summary["users_with_unknown"] == 3
    assert {k: v for k, v in records[0].items() if k != "line"} == {k: v for k, v in records[1].items() if k != "line"}


def test_lines_are_left_padded_cut_to_their_last_tokens_and_targets_ignored(out, synthetic_dir, tmp_path):
    tokens = lines_of(synthetic_dir, 1)[1].split(",")[-30:]
    lines = [",".join(tokens), ",".join(["0"] * 70 + tokens), ",".join(tokens) + ",,5,7",
             ",".join(tokens[:10] + tokens), ",".join(tokens[-5:])]
    records, summary = run_predict(out, lines, tmp_path, "--stage=ret_t4", "--length=30")
    answers = [{k: v for k, v in record.items() if k != "line"} for record in records]
    assert answers[0] == answers[1] == answers[2] == answers[3] != answers[4]
    assert summary["cut_lines"] == 2 and [record["line"] for record in records] == [1, 2, 3, 4, 5]


def test_exclude_seen_leaves_the_users_items_out_of_t1(out, synthetic_dir, tmp_path):
    lines = lines_of(synthetic_dir, 1)[:5]
    every, _ = run_predict(out, lines, tmp_path, "--stage=ret_t4", "--tasks=1", "--k=1000")
    unseen, _ = run_predict(out, lines, tmp_path, "--stage=ret_t4", "--tasks=1", "--k=5", "--exclude_seen")
    for line, all_items, record in zip(lines, every, unseen):
        seen = set(line.split(","))
        assert record["next_item"]["items"] == [i for i in all_items["next_item"]["items"] if i not in seen][:5]
    vocab = data_loader.Vocab.load(out / "Models" / "ret_t4" / "vocab.json")
    assert sorted(every[0]["next_item"]["items"]) == sorted(vocab.items)  # every item, no reserved id


@pytest.mark.parametrize("stage_name, argv, answered", [
    ("ret_t4", [], ["next_item", "clicks", "likes", "gender"]),
    ("tp_t3", [], ["next_item", "clicks"]),
    ("finesmax_t2", [], ["clicks"]),
    ("sinmoall_t2", [], ["next_item", "clicks"]),  # one model, as the reproduction scores it
    ("ret_t4", ["--tasks=4,2"], ["clicks", "gender"]),
])
def test_a_checkpoint_answers_the_tasks_it_holds(stage_name, argv, answered, out, synthetic_dir, tmp_path):
    records, summary = run_predict(out, lines_of(synthetic_dir, 1)[:2], tmp_path, f"--stage={stage_name}", *argv)
    assert summary["tasks"] == answered and [k for k in records[0] if k in NAMES.values()] == answered


EARLIER_OUTPUT = '{"line": 1, "unknown_tokens": 0}\n'  # an earlier predictions file, which a new one may replace
BAD_INPUT = {
    "empty line": ("3,5\n\n3,5\n", "users.csv:2: empty line"),
    "empty token": ("3,5\n3,5,\n", "users.csv:2: empty source token at position 3 of 3"),
    "no source": ("3,5\n,,7\n", "users.csv:2: no source token before ',,'"),
    "binary": ("3,5\n3,\x00,5\n", "users.csv:2: binary or not UTF-8"),
    "another data set": ("x1,x2\nx3\n", "no token is in the vocabulary of checkpoint ret_t4"),
    "missing file": (None, "users.csv: file not found"),
}
BAD_SETTINGS = {
    "pruned, not retrained": (["--stage=tp_t2", "--tasks=2"], "holds T2 pruned but not retrained"),
    "another baseline task": (["--stage=finesmax_t2", "--tasks=1"], "finesmax model of T2 alone; it cannot answer T1"),
    "a later task": (["--stage=ret_t2", "--tasks=1-3"], "holds T1-T2"),
    "no such task": (["--stage=ret_t4", "--tasks=9"], "no task 9"),
    "missing checkpoint": (["--stage=ret_t5"], "run conure_ret_t5.py first"),
    "bad k": (["--stage=ret_t4", "--k=0"], "--k=0"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT) + sorted(BAD_SETTINGS))
def test_bad_input_stops_with_one_line_and_writes_nothing(case, out, tmp_path, capsys):
    text, message = BAD_INPUT.get(case, ("3,5\n", None))
    argv, message = BAD_SETTINGS.get(case, (["--stage=ret_t4"], message))
    users, target = tmp_path / "users.csv", tmp_path / "predictions.jsonl"
    if text is not None:
        users.write_text(text)
    target.write_text(EARLIER_OUTPUT)
    with pytest.raises(SystemExit) as exit_info:
        predict.main([f"--out_dir={out}", f"--input={users}", f"--out={target}", *argv])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith("error: ") and "\n" not in err and message in err
    assert target.read_text() == EARLIER_OUTPUT
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["predictions.jsonl"] + ["users.csv"] * (text is not None))


def test_bad_input_found_while_writing_parquet_leaves_no_file(out, tmp_path, capsys):
    (tmp_path / "users.csv").write_text("x1,x2\nx3\n")  # another data set: found after the answers are written
    with pytest.raises(SystemExit) as exit_info:
        predict.main([f"--out_dir={out}", "--stage=ret_t4", f"--input={tmp_path / 'users.csv'}",
                      f"--out={tmp_path / 'predictions.parquet'}"])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "\n" not in err and "no token is in the vocabulary" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users.csv"]
