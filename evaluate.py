"""Evaluate task K with the checkpoint of any stage at or after K's retrain (or any baseline
checkpoint that holds task K), or prove on the weights that K's predictions cannot have changed.

    python evaluate.py --task=1 --stage=ret_t4 [--data_dir=Data/Session --out_dir=Data --eval_cap=0]
    python evaluate.py --task=1 --stage=ret_t4 --proof

The first prints the held-out metrics and writes them, with `scores_sha256` (SHA-256 of the
held-out score matrix) and the settings it was computed under, to
<out_dir>/Results/eval_t<K>_<stage>.json. Two hashes compare only under equal settings (the
evaluation settings, backend, library versions, device and CPU kernels are recorded with each).

--proof compares every parameter task K's inference reads between K's own checkpoint (ret_tK;
sinmo_t1 or <method>_tK for a baseline) and --stage, bit for bit, and prints
`parameters read by T<K>: <N> compared, <M> identical`. It exits 0 only when N == M; otherwise
it exits 1 and names the first parameter that differs. It holds on any machine.
"""
import argparse
import sys
import weakref
from pathlib import Path

import numpy as np

import assembly
import checkpoint
import data_loader
import fit
import methods
import metrics
import paths
import proof
import pruning
import settings
import tasks
import trainer
import keras  # noqa: E402  (after trainer, which quiets TensorFlow's logging)

_compiled = weakref.WeakKeyDictionary()


def compiled_method(model, key, fn):
    """trainer.compiled(fn) for `model`, traced once per model and key."""
    cache = _compiled.setdefault(model, {})
    if key not in cache:
        cache[key] = trainer.compiled(fn, model.variables)
    return cache[key]


def blocked(fn):
    """`fn` mapped over blocks of settings.EVAL_BLOCK rows. Matmul kernels pick their summation order by
    shape, so a row's scores could depend on how many rows share its batch; in fixed blocks every
    row is computed with the same shapes, and eval_batch_size (a multiple of the block) is only
    a memory and speed setting."""
    def run(*arrays):
        blocks = tuple(keras.ops.reshape(a, (-1, settings.EVAL_BLOCK, *a.shape[1:])) for a in arrays)
        out = keras.ops.map(lambda block: fn(*block), blocks)
        return keras.tree.map_structure(lambda o: keras.ops.reshape(o, (-1, *o.shape[2:])), out)
    return run


def eval_settings(config, item_chunked):
    """Everything that changes the evaluated floats: score hashes compare only under equal settings."""
    return {"eval_block": settings.EVAL_BLOCK, "eval_batch_size": config["eval_batch_size"],
            "eval_mode": "item-chunked ranks" if item_chunked else "score matrix",
            "eval_chunk": config["eval_chunk"] if item_chunked else None,
            "precision": config["precision"], **trainer.numerics()}


def score(model, number, data, config, phase="infer", part="test"):
    """Metrics of task `number` on the held-out examples (or the validation slice: part="valid"),
    capped if eval_cap, plus scores_sha256 and the settings it was computed under (`eval_settings`).

    Item tasks with more than `eval_chunk` targets are ranked on the device, item chunk by item
    chunk, without the score matrix; their scores_sha256 then covers the ranks, the top 5 and the
    true scores. Otherwise it is the SHA-256 of the whole held-out score matrix."""
    tokens, truth = data.inputs(part)
    n_part = len(truth)
    if config["eval_cap"]:
        tokens, truth = tokens[: config["eval_cap"]], truth[: config["eval_cap"]]
    chunk = config["eval_chunk"]
    item_chunked = data.kind != "class" and 0 < chunk < data.n_targets
    if item_chunked:
        excluded = data.excluded_targets
        run = compiled_method(model, ("ranks", number, phase, chunk), blocked(lambda t, y: model.task_ranks(
            t, y, number, phase, chunk, excluded)))
    else:
        run = compiled_method(model, ("scores", number, phase), blocked(lambda t: model.task_scores(t, number, phase)))
    hasher = metrics.ScoreHasher()
    ranks, class_scores = [], []
    size = config["eval_batch_size"]
    for start in range(0, len(tokens), size):
        rows, rows_truth = tokens[start:start + size], truth[start:start + size]
        if item_chunked:
            outputs = run(data_loader.pad_rows(rows, size), data_loader.pad_rows(rows_truth, size))
            batch_ranks, top, true_scores = (o[: len(rows)] for o in outputs)
            for part in (batch_ranks, top, true_scores):
                hasher.update(part)
            ranks.append(batch_ranks)
            continue
        scores = run(data_loader.pad_rows(rows, size))[: len(rows)]
        hasher.update(scores)
        if data.kind == "class":
            class_scores.append(scores)
        else:
            ranks.append(metrics.ranks_of(scores, rows_truth, data.excluded_targets))
    if data.kind == "class":
        result = metrics.classification_metrics(np.concatenate(class_scores), truth, seed=config["seed"])
    else:
        result = metrics.ranking_metrics(np.concatenate(ranks) if ranks else np.zeros(0))
    return {**result, "n_eval": int(len(truth)), "eval_capped": len(truth) < n_part,
            "scores_sha256": hasher.hexdigest(), "eval_settings": eval_settings(config, item_chunked)}


def result_name(number, stage_name):
    """The file in Results/ holding task `number` scored with checkpoint `stage_name` (a later stage's)."""
    return f"eval_t{number}_{stage_name}.json"


def evaluate_task(number, stage_name, data_dir=settings.DEFAULTS["data_dir"], out_dir=settings.DEFAULTS["out_dir"],
                  eval_cap=0, eval_batch_size=None, data=None):
    """Held-out metrics of task `number` under checkpoint `stage_name`; writes and returns them.
    Evaluation settings default to the checkpoint's. `data`: the task's split data, if the caller
    already loaded it with this chain's vocabulary."""
    phase, _ = methods.parse_stage(stage_name)
    if reason := methods.not_retrained(stage_name, number):
        raise settings.ConfigError(f"stage {stage_name} {reason}")
    paths.input_dir(data_dir, "data_dir")
    result_path = paths.replaceable(Path(out_dir) / "Results" / result_name(number, stage_name), "out_dir",
                                    "a results file", Path.is_file)
    directory = Path(out_dir) / "Models" / stage_name
    model, manifest, vocab, _, _ = assembly.restore(directory, methods.script_for(stage_name))
    entry = assembly.chain_entry(manifest, number)
    config = {**manifest["config"], "data_dir": data_dir, "eval_cap": eval_cap,
              "eval_batch_size": eval_batch_size or manifest["config"]["eval_batch_size"]}
    settings.validate(config)
    prints = data_loader.fingerprints(config, number)
    if prints["t1_sha256"] != manifest["t1_sha256"] or prints["task_sha256"] != entry["sha256"]:
        raise checkpoint.CheckpointError(
            f"checkpoint {stage_name} was trained on other data than {data_dir}: pass the data_dir it used")
    data = data or data_loader.load_task_data(number, config, vocab)
    result = {"task": number, "task_name": entry["name"], "stage": stage_name,
              **score(model, number, data, config, methods.RULES[phase].eval_view)}
    checkpoint.write_json(result, result_path)
    return result


def prove_task(number, stage_name, out_dir=settings.DEFAULTS["out_dir"], reference=None):
    """The weight-level proof for task `number` between its own checkpoint and `stage_name`."""
    methods.parse_stage(stage_name)
    reference = reference or methods.own_stage(methods.parse_stage(stage_name)[0], number)
    assembly.chain_entry(checkpoint.read_manifest(Path(out_dir) / "Models" / stage_name,
                                                  methods.script_for(stage_name)), number)
    return proof.prove_stage(number, stage_name, Path(out_dir) / "Models", reference)


def build_parser():
    """The command line this script accepts (tests/test_docs.py checks the docs against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", type=int, required=True, help="task number K (1..%d)" % len(tasks.TASKS))
    parser.add_argument("--stage", required=True, help="checkpoint stage, e.g. ret_t4")
    parser.add_argument("--data_dir", default=settings.DEFAULTS["data_dir"])
    parser.add_argument("--out_dir", default=settings.DEFAULTS["out_dir"])
    parser.add_argument("--eval_cap", type=int, default=0, help="at most this many held-out examples (0: all)")
    parser.add_argument("--eval_batch_size", type=int, default=None, help="default: the checkpoint's")
    parser.add_argument("--proof", action="store_true", help="compare the weights task K reads, bit for bit")
    parser.add_argument("--reference", default=None, help="with --proof: the checkpoint to compare with "
                                                           "(default: the task's own, e.g. ret_tK)")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.proof:
            result = prove_task(args.task, args.stage, args.out_dir, args.reference)
        else:
            result = evaluate_task(args.task, args.stage, args.data_dir, args.out_dir, args.eval_cap,
                                   args.eval_batch_size)
    except (settings.ConfigError, paths.PathError, data_loader.DataError, checkpoint.CheckpointError,
            pruning.OwnershipError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if args.proof:
        print(result.line())
        if not result.holds:
            print(f"first difference ({result.reference} vs {result.stage}): {result.first_difference}",
                  file=sys.stderr)
            sys.exit(1)
        return result
    print(f"T{args.task} ({result['task_name']}) with {args.stage}, {result['n_eval']:,} held-out examples: "
          + fit.format_metrics(result))
    print(f"scores_sha256 {result['scores_sha256']}")
    return result


if __name__ == "__main__":
    main()
