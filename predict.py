"""Answer every task a checkpoint holds, for a file of users.

    python predict.py --stage=ret_t6 --input=users.csv --k=10 --out=predictions.jsonl
        [--tasks=1-6 --exclude_seen --out_dir=Data --length=100 --batch_size=256 --format=jsonl|csv|parquet]

Input: one user per line in the TTL source format: comma-separated item tokens, oldest first, `0` for
padding. A `,,targets` part is ignored. Lines are left-padded to `--length` tokens; a longer line keeps
its last `--length`. Tokens the checkpoint's T1 vocabulary lacks map to <unk> and are counted.

Output: one record per input line, in input order, in the format --format names, else the one the
suffix of --out names (.jsonl, .csv, .parquet); any other suffix without --format is refused.
- JSON lines: {"line": 1, "unknown_tokens": 0, "next_item": {"items": [...], "scores": [...]}, ...,
  "gender": {"label": "1", "probabilities": {"1": 0.8, "2": 0.2}}}
- CSV and Parquet, one row per user: line, unknown_tokens; per item task <task>_1..k (tokens) and
  <task>_score_1..k; per classification task <task> (the label) and <task>_p_<label> for every
  label. Parquet types them: int64, string (tokens, labels), float32; a missing answer is null
  (CSV: an empty cell).
Item tasks (T1-T3) give their top k as original tokens with their scores (T1: logits; T2, T3: the
dot product the model ranks by). Classification tasks give the argmax label and a softmax over the
class scores. --exclude_seen leaves the user's own items out of T1's list.

A Conure checkpoint answers every task it holds that has been retrained (tp_tK holds TK pruned but
not retrained); a baseline checkpoint answers its own task. The output is written to a temporary
file and renamed into place: bad input stops with one line and leaves no output behind.
"""
import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import assembly
import checkpoint
import data_loader
import evaluate
import methods
import paths
import settings
import tasks
from wording import plural
import keras  # noqa: E402  (after the modules above, whose trainer quiets TensorFlow's logging)
from keras import ops

RESERVED_NAMES = ("<pad>", "<unk>", "<sep>")  # ids 0-2 of the T1 vocabulary, never an answer
FORMATS = ("jsonl", "csv", "parquet")  # each is also the suffix that selects it
PARQUET_MAGIC = b"PAR1"
ROW_GROUP_BYTES = 32 << 20  # Parquet answers are buffered up to this size, then written as one row group
K = 10  # items answered per item task
LENGTH = 100  # tokens read per user: TTL's lines
BATCH_SIZE = settings.DEFAULTS["eval_batch_size"]  # users per batch


@dataclass
class Served:
    """A model and what it answers: (number, name, kind) of each task, in the weights view."""
    model: object
    vocab: data_loader.Vocab
    targets: dict
    tasks: list
    view: str
    stage: str

    def answer_tokens(self, number):
        """Token of every id the task answers with: T1 items (reserved ids by name) or targets."""
        if number == 1:
            return list(RESERVED_NAMES) + self.vocab.items
        return list(self.targets[number].tokens)

    def n_answers(self, number):
        """Items or labels a task can answer with (T1: its items, not the reserved ids)."""
        return len(self.vocab.items) if number == 1 else len(self.targets[number].tokens)


def is_predictions(path):
    """True for an earlier output of predict.py (JSON lines, CSV or Parquet, by its first line or
    columns) or an empty file."""
    try:
        with open(path, "rb") as f:
            if f.read(len(PARQUET_MAGIC)) == PARQUET_MAGIC:
                import pyarrow.parquet as pq
                return pq.read_schema(path).names[:2] == ["line", "unknown_tokens"]
            f.seek(0)
            first = f.readline().decode("utf-8")
    except (OSError, UnicodeDecodeError, ValueError):  # pyarrow's ArrowInvalid is a ValueError
        return False
    if not first or first.startswith("line,unknown_tokens"):
        return True
    try:
        return "unknown_tokens" in json.loads(first)
    except (ValueError, TypeError):
        return False


def parse_task_list(text):
    """'1-6', '1,2,4' or '2' -> sorted task numbers (tasks.parse_numbers)."""
    try:
        return tasks.parse_numbers(text)
    except ValueError as e:
        raise settings.ConfigError(f"--tasks={text}: {e}") from None


def answerable(manifest):
    """Task numbers a checkpoint can answer for, and the reason it cannot answer the others."""
    phase, number = methods.parse_stage(manifest["stage"])
    held = [entry["task"] for entry in manifest["tasks"]]
    if reason := methods.not_retrained(manifest["stage"], number):
        return [n for n in held if n != number], reason
    if methods.RULES[phase].one_model:
        return held, f"holds T{held[0]}-T{held[-1]}: a later task needs its own stage"
    return [number], f"is a {phase} model of T{number} alone"


def load(directory, numbers=None):
    """The checkpoint in `directory`, serving `numbers` (default: every task it can answer for)."""
    directory = Path(directory)
    model, manifest, vocab, targets, _ = assembly.restore(directory, methods.script_for(directory.name))
    can, reason = answerable(manifest)
    for number in numbers or can:
        if number not in can:
            raise settings.ConfigError(f"checkpoint {manifest['stage']} {reason}; it cannot answer T{number}")
    if not (numbers or can):
        raise settings.ConfigError(f"checkpoint {manifest['stage']} {reason}")
    served = []
    for number in numbers or can:
        entry = assembly.chain_entry(manifest, number)
        if entry["name"] != tasks.task(number).name:
            raise checkpoint.CheckpointError(f"checkpoint {manifest['stage']} has T{number} = {entry['name']}, "
                                             f"tasks.py says {tasks.task(number).name}")
        served.append((number, entry["name"], entry["kind"]))
    view = methods.RULES[methods.parse_stage(manifest["stage"])[0]].eval_view
    return Served(model, vocab, targets, served, view, manifest["stage"])


def task_outputs(model, ids, number, kind, view, depth):
    """One task's answers for rows of T1 ids, in the graph: item tasks the top `depth` (scores, ids)
    with T1's reserved ids scored -inf; classification (softmax probabilities, argmax class)."""
    if number > 1:
        ids = ops.concatenate([ids, ops.full((ops.shape(ids)[0], 1), data_loader.SEP, dtype=ids.dtype)], axis=1)
    scores = model.task_scores(ids, number, view)
    if kind == "class":
        return ops.softmax(scores, axis=-1), ops.cast(ops.argmax(scores, axis=-1), "int32")
    if number == 1:
        reserved = ops.arange(scores.shape[-1]) < data_loader.N_RESERVED
        scores = ops.where(reserved, -float("inf"), scores)
    top = ops.top_k(scores, depth)
    return top[0], top[1]


class Predictor:
    """Answers of every served task for batches of T1 id rows (data_loader.read_users)."""

    def __init__(self, served, k=K, exclude_seen=False, batch_size=BATCH_SIZE):
        self.served, self.k, self.exclude_seen, self.batch_size = served, k, exclude_seen, batch_size
        self.tokens = {number: np.asarray(served.answer_tokens(number), dtype=object) for number, _, _ in served.tasks}

    def width(self, number):
        """Items per answer of an item task: k, or all of them if there are fewer."""
        return min(self.k, self.served.n_answers(number))

    def depth(self, number, length):
        """Candidates to take: k, plus as many as the user's own items that --exclude_seen drops."""
        seen = length if number == 1 and self.exclude_seen else 0
        return min(self.k + seen, self.served.n_answers(number))

    def _run(self, number, kind, depth):
        model, view = self.served.model, self.served.view
        return evaluate.compiled_method(model, ("predict", number, view, depth), lambda ids: task_outputs(
            model, ids, number, kind, view, depth))

    def answer(self, ids):
        """{task number: (tokens [n, <=k] or labels [n], scores [n, <=k] or probabilities [n, classes])}."""
        n, length = ids.shape
        padded = data_loader.pad_rows(ids, self.batch_size)
        answers = {}
        for number, _, kind in self.served.tasks:
            depth = self.depth(number, length) if kind != "class" else None
            values, index = (o[:n] for o in self._run(number, kind, depth)(padded))
            if kind == "class":
                answers[number] = (self.tokens[number][index], values)
                continue
            if number == 1 and self.exclude_seen:
                keep = ~(index[:, :, None] == ids[:, None, :]).any(axis=2)
                order = np.argsort(~keep, axis=1, kind="stable")
                values, index = np.take_along_axis(values, order, 1), np.take_along_axis(index, order, 1)
                values = np.where(np.take_along_axis(keep, order, 1), values, -np.inf)
            width = self.width(number)
            answers[number] = (self.tokens[number][index[:, :width]], values[:, :width])
        return answers


def shortest(values):
    """float32 values as the shortest decimals that read back as the same float32."""
    return np.asarray(values, dtype=np.float32).astype(str)


class Writer:
    """Writes batches of answers into an open file; closing finishes the file."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        pass


class JsonLines(Writer):
    def __init__(self, f, served, predictor):
        self.f, self.served = f, served

    def write(self, first_line, unknown, answers):
        for row in range(len(unknown)):
            record = {"line": first_line + row + 1, "unknown_tokens": int(unknown[row])}
            for number, name, kind in self.served.tasks:
                tokens, values = answers[number]
                numbers = [float(v) for v in shortest(values[row])]
                if kind == "class":
                    labels = self.served.answer_tokens(number)
                    record[name] = {"label": tokens[row], "probabilities": dict(zip(labels, numbers))}
                else:
                    found = np.isfinite(values[row])  # False only where --exclude_seen left fewer than k
                    record[name] = {"items": list(tokens[row][found]), "scores": list(np.array(numbers)[found])}
            self.f.write(json.dumps(record) + "\n")


def table_columns(served, predictor):
    """The columns of CSV and Parquet, in order: (name, type), type "int", "str" or "float"."""
    columns = [("line", "int"), ("unknown_tokens", "int")]
    for number, name, kind in served.tasks:
        if kind == "class":
            columns += [(name, "str")] + [(f"{name}_p_{label}", "float") for label in served.answer_tokens(number)]
        else:
            places = range(1, predictor.width(number) + 1)
            columns += [(f"{name}_{i}", "str") for i in places] + [(f"{name}_score_{i}", "float") for i in places]
    return columns


def table_values(served, first_line, unknown, answers):
    """One batch as the values of table_columns, an array each. A place --exclude_seen left empty
    (fewer than k items remained) has no token (None) and no score (nan)."""
    values = [np.arange(first_line + 1, first_line + len(unknown) + 1), unknown]
    for number, _, kind in served.tasks:
        tokens, scores = answers[number]
        if kind == "class":
            values += [tokens, *scores.T]
        else:
            found = np.isfinite(scores)
            values += [*np.where(found, tokens, None).T, *np.where(found, scores, np.nan).T]
    return values


class Csv(Writer):
    def __init__(self, f, served, predictor):
        self.writer, self.served = csv.writer(f), served
        columns = table_columns(served, predictor)
        self.types = [kind for _, kind in columns]
        self.writer.writerow([name for name, _ in columns])

    def write(self, first_line, unknown, answers):
        cells = []  # a missing token (None) or score (nan) is an empty cell
        for kind, values in zip(self.types, table_values(self.served, first_line, unknown, answers)):
            if kind == "float":
                values = np.where(np.isnan(values), "", shortest(values))
            elif kind == "str":
                values = np.where(np.equal(values, None), "", values)
            cells.append(np.asarray(values, dtype=object))
        self.writer.writerows(np.stack(cells, axis=1).tolist())


class Parquet(Writer):
    TYPES = {"int": "int64", "str": "string", "float": "float32"}

    def __init__(self, f, served, predictor):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.pa, self.served, self.pending = pa, served, []
        self.schema = pa.schema([(name, self.TYPES[kind]) for name, kind in table_columns(served, predictor)])
        self.writer = pq.ParquetWriter(f, self.schema)

    def write(self, first_line, unknown, answers):
        arrays = [self.pa.array(values, type=field.type, from_pandas=True)  # None and nan become null
                  for field, values in zip(self.schema, table_values(self.served, first_line, unknown, answers))]
        self.pending.append(self.pa.record_batch(arrays, schema=self.schema))
        if sum(batch.nbytes for batch in self.pending) >= ROW_GROUP_BYTES:
            self.flush()

    def flush(self):
        if self.pending:
            self.writer.write_table(self.pa.Table.from_batches(self.pending))
            self.pending = []

    def close(self):
        self.flush()
        self.writer.close()


WRITERS = {"jsonl": JsonLines, "csv": Csv, "parquet": Parquet}


def count_lines(path):
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 24), b""))


def predict_file(directory, input_path, out_path, numbers=None, k=K, exclude_seen=False, length=LENGTH,
                 batch_size=BATCH_SIZE, fmt=None, progress=False, log=print):
    """Answer the served tasks for every user of `input_path`, streaming into `out_path`."""
    fmt = paths.output_format(out_path, "--out", FORMATS, fmt)
    for name, value in (("k", k), ("length", length), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise settings.ConfigError(f"--{name}={value}: must be an integer >= 1")
    paths.input_file(input_path, "--input")
    if Path(out_path).resolve() == Path(input_path).resolve():
        raise settings.ConfigError(f"--out={out_path} is the input file")
    paths.replaceable(out_path, "--out", "a predictions file", is_predictions)
    started = time.time()
    return write_answers(load(directory, numbers), input_path, out_path, k, exclude_seen, length, batch_size, fmt,
                         progress, log, started)


def write_answers(served, input_path, out_path, k=K, exclude_seen=False, length=LENGTH, batch_size=BATCH_SIZE,
                  fmt="jsonl", progress=False, log=print, started=None):
    """Stream the answers of `served` for every user of `input_path` into `out_path` (atomically), in
    format `fmt` (one of FORMATS)."""
    started = started or time.time()
    predictor = Predictor(served, k, exclude_seen, batch_size)
    bar = keras.utils.Progbar(count_lines(input_path) if progress else None, verbose=int(progress), unit_name="user")
    totals = dict.fromkeys(("users", "unknown_tokens", "users_with_unknown", "known_tokens", "cut_lines"), 0)
    with checkpoint.atomic_file(out_path, newline="", binary=fmt == "parquet") as f, \
            WRITERS[fmt](f, served, predictor) as writer:
        for block in data_loader.read_users(input_path, served.vocab, length):
            for start in range(0, len(block.ids), batch_size):
                ids, unknown = block.ids[start:start + batch_size], block.unknown[start:start + batch_size]
                writer.write(block.first_line + start, unknown, predictor.answer(ids))
                totals["users"] += len(ids)
                bar.update(totals["users"])
            totals["unknown_tokens"] += int(block.unknown.sum())
            totals["users_with_unknown"] += int(np.count_nonzero(block.unknown))
            totals["known_tokens"] += int(np.count_nonzero(block.ids >= data_loader.N_RESERVED))
            totals["cut_lines"] += int(block.cut.sum())
        if totals["unknown_tokens"] and not totals["known_tokens"]:
            raise data_loader.DataError(input_path, f"no token is in the vocabulary of checkpoint {served.stage}: "
                                                    "is this file from another data set?")
    seconds = time.time() - started
    names = ", ".join(name for _, name, _ in served.tasks)
    log(f"{served.stage}: {names} for {plural(totals['users'], 'user')} in {seconds:.1f} s; wrote {out_path}")
    if totals["unknown_tokens"]:
        log(f"warning: {plural(totals['unknown_tokens'], 'token')} of {plural(totals['users_with_unknown'], 'user')} "
            "not in the T1 vocabulary (mapped to <unk>)")
    if totals["cut_lines"]:
        log(f"note: {plural(totals['cut_lines'], 'line')} had more than {length} tokens; the last {length} were used")
    return {**totals, "tasks": [name for _, name, _ in served.tasks], "stage": served.stage, "seconds": seconds}


def build_parser():
    """The command line this script accepts (tests/test_docs.py checks the docs against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True, help="checkpoint stage, e.g. ret_t6 or finall_t3")
    parser.add_argument("--input", required=True, help="file of users, one per line (TTL source format)")
    parser.add_argument("--out", required=True, help="output file: .jsonl (JSON lines), .csv or .parquet; "
                                                     "another suffix needs --format")
    parser.add_argument("--tasks", help="tasks to answer, e.g. 1-6 or 1,4 (default: every task the checkpoint "
                                        "answers for)")
    parser.add_argument("--k", type=int, default=K, help=f"items per item task (default {K})")
    parser.add_argument("--exclude_seen", action="store_true", help="leave the user's own items out of T1's list")
    parser.add_argument("--out_dir", default=settings.DEFAULTS["out_dir"], help="folder holding Models/")
    parser.add_argument("--length", type=int, default=LENGTH, help=f"tokens per user (default {LENGTH}, TTL's lines)")
    parser.add_argument("--batch_size", type=int, default=BATCH_SIZE)
    parser.add_argument("--format", choices=FORMATS, help="jsonl, csv or parquet (default: the one the suffix "
                                                          "of --out names)")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        numbers = parse_task_list(args.tasks) if args.tasks else None
        methods.parse_stage(args.stage)
        return predict_file(Path(args.out_dir) / "Models" / args.stage, args.input, args.out, numbers, args.k,
                            args.exclude_seen, args.length, args.batch_size, args.format, sys.stdout.isatty())
    except (settings.ConfigError, paths.PathError, data_loader.DataError, checkpoint.CheckpointError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
