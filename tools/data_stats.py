"""How big and how dense a data folder is, in the terms docs/your-data.md compares data sets by.

    python tools/data_stats.py --data_dir=Data/ttl-sample

For T1: the training users (the 80% split less the validation slice, as the converged preset
trains), their items per user, how many distinct items they hold and how many of those are rare,
and what a k-core filter (`--min_item_count`) at each `--k` keeps, with the shares of the held-out
users' targets and input items it turns into `<unk>`. For every later task file the
folder holds: its training examples and targets, and the majority label's share for a classifier.
`--baselines` also fits every task's simple baselines (popularity or the majority label; the
Markov chain, co-occurrence or logistic regression) and prints their held-out HR@5 or accuracy:
the bar a trained model has to clear. Nothing else is trained; the split is the one every stage
uses.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python tools/data_stats.py` imports the project's modules from the root

import data_loader  # noqa: E402
import paths  # noqa: E402
import run_all  # noqa: E402
import settings  # noqa: E402
import simple_baselines  # noqa: E402
import tasks  # noqa: E402


def t1_stats(t1, t1_data, config, ks):
    """T1's size and density, and what each k-core keeps (`t1_data`: T1's file, read once)."""
    ids = t1.train_ids[t1.train_ids >= data_loader.N_RESERVED]
    counts = np.bincount(ids)[data_loader.N_RESERVED:]
    counts = counts[counts > 0]
    found = {"training_users": t1.n_train, "items_per_user": len(ids) / t1.n_train,
             "items_in_training": len(counts), "vocabulary": t1.vocab.size - data_loader.N_RESERVED,
             "items_seen_once": float(np.mean(counts == 1)), "items_seen_under_5": float(np.mean(counts < 5)),
             "interactions_on_items_seen_under_5": float(counts[counts < 5].sum() / counts.sum())}
    for k in ks:
        try:
            kept = data_loader.load_task_data(1, {**config, "min_item_count": k}, t1_data=t1_data)
            found[f"k{k}"] = {"training_users": kept.n_train, "items": kept.vocab.size - data_loader.N_RESERVED,
                              **held_out_unknown(*kept.inputs("test"))}
        except data_loader.DataError:
            found[f"k{k}"] = "keeps no training user"
    return found


def held_out_unknown(inputs, truth):
    """The shares of the held-out users' targets and input items that a filter turned <unk>: a
    target that is <unk> counts as a miss for every method."""
    inputs = inputs[inputs != data_loader.PAD]
    return {"held_out_targets_unknown": float(np.mean(truth == data_loader.UNK)),
            "held_out_inputs_unknown": float(np.mean(inputs == data_loader.UNK))}


def task_stats(data):
    """A later task's training examples and targets; the majority label's share for a classifier."""
    counts = data.train_target_counts()
    found = {"training_examples": data.n_train, "targets": data.n_targets}
    if data.kind == "class":
        found["majority_share"] = float(counts.max() / counts.sum())
    return found


def baseline_scores(data, number):
    """The held-out main metric of the task's two simple baselines (simple_baselines.py)."""
    metric = run_all.main_metric(number)
    name, strong = simple_baselines.strong(data)
    return {f"{simple_baselines.trivial_name(data)} {metric}": simple_baselines.popularity(data)[metric],
            f"{name} {metric}": strong[metric]}


def data_stats(data_dir, valid=0.1, ks=(5, 20), baselines=False):
    """{task name: its statistics} for every task file in `data_dir`."""
    config = {**settings.DEFAULTS, **settings.CHAIN_DEFAULTS, "data_dir": str(data_dir), "valid": valid}
    t1_data = data_loader.read_t1(data_loader.task_file(config, 1))
    t1 = data_loader.load_task_data(1, config, t1_data=t1_data)
    found = {tasks.task(1).name: t1_stats(t1, t1_data, config, ks)}
    datas = {1: t1}
    for number, task in enumerate(tasks.TASKS[1:], 2):
        if (Path(data_dir) / task.file).is_file():
            datas[number] = data_loader.load_task_data(number, config, t1.vocab)
            found[task.name] = task_stats(datas[number])
    for number, data in datas.items() if baselines else ():
        found[tasks.task(number).name].update(baseline_scores(data, number))
    return found


def build_parser():
    """The command line this script accepts (tests/test_docs.py checks the docs against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=settings.DEFAULTS["data_dir"])
    parser.add_argument("--valid", type=float, default=0.1, help="the validation slice, as in the preset")
    parser.add_argument("--k", default="5,20", help="k-core thresholds to try, comma-separated")
    parser.add_argument("--baselines", action="store_true",
                        help="also fit every task's simple baselines and print their held-out scores")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        ks = [int(k) for k in args.k.split(",") if k.strip()]
        if any(k < 1 for k in ks):
            raise ValueError
    except ValueError:
        print(f"error: --k={args.k}: expected positive integers separated by commas", file=sys.stderr)
        sys.exit(2)
    try:
        paths.input_dir(args.data_dir, "--data_dir")
        found = data_stats(args.data_dir, args.valid, ks, args.baselines)
    except (paths.PathError, data_loader.DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    for name, values in found.items():
        print(f"{name}: {described(values)}")
    return found


def described(values):
    """The entries as 'key value, ...', fractions to four decimals, nested entries in brackets."""
    def value(v):
        if isinstance(v, dict):
            return f"({described(v)})"
        return f"{v:.4f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v)
    return ", ".join(f"{k} {value(v)}" for k, v in values.items())


if __name__ == "__main__":
    main()
