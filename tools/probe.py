"""Linear probes: how much of a classification task a checkpoint's frozen user representation holds.

    python tools/probe.py --out_dir=Data/Repro/ttl-sample/seed0 --stage=ret_t1 --task=4 --data_dir=Data/ttl-sample

For the task's examples (the split and validation slice of the checkpoint's chain, 10% by
default), the source sequences go through the checkpoint as task `--as_task` sees them (default 1:
T1's weights). The last position's output and the mean over the non-padding positions, each
standardised on the training rows, are each the input of a multinomial logistic regression with C
chosen on the validation slice (simple_baselines.fit_logistic); their held-out accuracies print
beside the majority label's and the bag-of-items regression's, and go to
<out_dir>/Results/probe_t<task>_<stage>.json.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python tools/probe.py` imports the project's modules from the root

import assembly  # noqa: E402
import checkpoint  # noqa: E402
import data_loader  # noqa: E402
import evaluate  # noqa: E402
import methods  # noqa: E402
import paths  # noqa: E402
import settings  # noqa: E402
import simple_baselines  # noqa: E402
import tasks  # noqa: E402

BLOCK = 256  # sequences encoded at a time


def representations(model, sources, task, view):
    """(last position, mean over non-padding positions) of the backbone's output, [rows, C] each."""
    encode = evaluate.compiled_method(model, ("probe", task, view), lambda tokens: model.hidden(tokens, task, view))
    last, mean = [], []
    for start in range(0, len(sources), BLOCK):
        rows = sources[start:start + BLOCK]
        hidden = encode(data_loader.pad_rows(rows, BLOCK))[:len(rows)]
        kept = (rows != data_loader.PAD)[:, :, None]
        last.append(hidden[:, -1])
        mean.append((hidden * kept).sum(axis=1) / np.maximum(kept.sum(axis=1), 1))
    return np.concatenate(last), np.concatenate(mean)


def standardised(train, *others):
    """Every array centred and scaled by the training rows' mean and standard deviation per column."""
    mean, scale = train.mean(axis=0), train.std(axis=0) + 1e-8
    return [(x - mean) / scale for x in (train, *others)]


def probe(directory, task, data_dir, as_task=1, valid=0.1):
    """Held-out accuracy of a logistic regression on each representation, and of the baselines."""
    model, manifest, vocab, _, _ = assembly.restore(directory, methods.script_for(Path(directory).name))
    config = {**manifest["config"], "data_dir": data_dir, "valid": valid}
    data = data_loader.load_task_data(task, config, vocab)
    view = methods.RULES[methods.parse_stage(manifest["stage"])[0]].eval_view
    parts = {part: representations(model, data.sources[lines], as_task, view)
             for part, lines in (("train", data.train_lines), ("valid", data.valid_lines), ("test", data.test_lines))}
    found = {"stage": manifest["stage"], "task": task, "as_task": as_task,
             "majority": simple_baselines.popularity(data)["accuracy"],
             "bag_of_items_regression": simple_baselines.logistic_regression(data)["accuracy"]}
    for i, name in enumerate(("last_position", "mean_over_positions")):
        train, valid, test = standardised(parts["train"][i], parts["valid"][i], parts["test"][i])
        fitted = simple_baselines.fit_logistic(train, data.train_targets, (valid, data.valid_targets),
                                               test, data.test_targets, data.n_targets)
        found[name] = fitted["accuracy"]
    return found


def build_parser():
    """The command line this script accepts (tests/test_docs.py checks the docs against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", required=True, help="checkpoint stage, e.g. ret_t1 or sinmo_t1")
    parser.add_argument("--task", type=int, required=True, help="the classification task to probe, e.g. 4")
    parser.add_argument("--as_task", type=int, default=1, help="whose view of the backbone (default 1: T1's)")
    parser.add_argument("--data_dir", default=settings.DEFAULTS["data_dir"])
    parser.add_argument("--out_dir", default=settings.DEFAULTS["out_dir"], help="folder holding Models/")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.task not in range(1, len(tasks.TASKS) + 1) or tasks.task(args.task).kind != "class":
            raise settings.ConfigError(f"--task={args.task}: not a classification task of tasks.py")
        paths.input_dir(args.data_dir, "--data_dir")
        result_path = paths.replaceable(Path(args.out_dir) / "Results" / f"probe_t{args.task}_{args.stage}.json",
                                        "--out_dir", "a results file", Path.is_file)
        found = probe(Path(args.out_dir) / "Models" / args.stage, args.task, args.data_dir, args.as_task)
    except (settings.ConfigError, paths.PathError, data_loader.DataError, checkpoint.CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    checkpoint.write_json(found, result_path)
    print(" ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in found.items()))
    return found


if __name__ == "__main__":
    main()
