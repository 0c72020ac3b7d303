"""The whole pipeline in one command: every stage of T1..T6, a re-evaluation of every finished task
after every later stage, and a summary: Results/summary.md, summary.csv and forgetting.png.

    python run_all.py                                    # synthetic data (made if Data/Session has none)
    python run_all.py --data_dir=Data/ttl-sample --tasks=1-4 --out_dir=Data/ttl  # the TTL sample (docs/data.md)
    python run_all.py --preset=paper                     # the stage scripts' own (release) settings
    python run_all.py --method=sinmoall                  # a baseline (docs/baselines.md) instead of Conure

Presets: "quick" (default) is sized to finish T1..T6 on the synthetic data in about 7 minutes of one
CPU core (433 s on a 2-core Intel Xeon; presets.QUICK); "paper" runs every stage with its script's
hyperparameter block. A baseline trains each task for the epochs of Conure's tp and ret stages
together, from the same blocks. --show_config prints every stage's settings and where each came from.
Outputs of a baseline carry its name: Results/summary_<method>.md and so on.
"""
import argparse
import json
import runpy
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import checkpoint
import data_loader
import evaluate
import methods
import metrics
import paths
import presets
import proof
import settings
import simple_baselines
import stage
from data_prep import synthetic_data
import tasks
from wording import plural

ROOT = Path(__file__).resolve().parent
METHODS = ("conure", "sinmo", "sinmoall", "finall", "finesmax", "peterrec", "hat", "teracon")
CHAIN_OPTIONS = ("channels", "dilations", "train_share", "min_item_count")  # set at each chain's first stage
ONE_MODEL = tuple(m for m in METHODS if methods.rule_of(m).one_model)  # each task scored after every later stage
BASELINES_FILE = "simple_baselines.json"  # in Results/: the simple baselines, one entry per task and split


def parse_tasks(text):
    """'1-4' or '1,2,3' -> [1, 2, 3, 4]; the chain must start at T1 and have no gaps."""
    try:
        return tasks.parse_numbers(text, chain=True)
    except ValueError as e:
        raise settings.ConfigError(f"--tasks={text}: {e}") from None


def parse_extension(text):
    """'embedding=owned,task_dropout=0.3' -> {'embedding': 'owned', 'task_dropout': 0.3} ('' -> {})."""
    found = {}
    for item in filter(None, text.split(",")):
        key, equals, value = item.partition("=")
        if not equals or key not in presets.EXTENSION_STAGES:
            raise argparse.ArgumentTypeError(f"{item!r}: expected setting=value, a setting one of "
                                             f"{', '.join(presets.EXTENSION_STAGES)}")
        found[key] = settings.parse_value(key, value, presets.EXTENSION[key])
    return found


def parse_dilations(text):
    try:
        return [int(x) for x in text.strip("[]").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers like 1,4,1,4")


def script_block(name):
    script = ROOT / f"conure_{name}.py"
    return settings.hyperparameters(runpy.run_path(str(script))) if script.exists() else {}


def stage_block(name):
    """(source, the hyperparameters a stage runs with before presets): its script's block; a baseline
    takes the tp script's block with the epochs of tp and ret together."""
    phase, number = methods.parse_stage(name)
    if phase in methods.CONURE_PHASES:
        return f"script block (conure_{name}.py)", script_block(name)
    block = script_block(f"tp_t{number}")
    block["epochs"] = presets.baseline_epochs(block.get("epochs", settings.DEFAULTS["epochs"]),
                                              script_block(f"ret_t{number}").get("epochs", 0))
    return f"script block (conure_tp_t{number}.py; epochs: its and conure_ret_t{number}.py's together)", block


def stage_config(name, args, data_settings=None):
    """(config, the names set over the script's block, {setting: its source}) of stage `name`: DEFAULTS <
    its script's block < the preset and the data set's tuned choices < run_all.py's options."""
    chain = {k: getattr(args, k) for k in CHAIN_OPTIONS if getattr(args, k) is not None}
    options = {"data_dir": args.data_dir, "out_dir": args.out_dir, "seed": args.seed, "verbose": args.verbose}
    if args.prune_ratio is not None and name.startswith("tp_"):
        options["prune_ratio"] = args.prune_ratio
    layers = presets.layers(name, args.preset, data_settings, chain, class_loss=args.class_loss,
                            later_learning_rate=args.later_learning_rate, extension=args.extension,
                            item_loss=args.item_loss, hat_optimizer=args.hat_optimizer)
    config, sources = settings.resolve([("default (settings.DEFAULTS)", settings.DEFAULTS), stage_block(name),
                                        *layers, ("run_all.py's options", options)])
    explicit = {key for _, values in layers for key in values} | set(options) - {"data_dir", "out_dir"}
    return config, explicit, sources


def show_configs(names, configs):
    """Every stage's settings with their sources (stage.show_config), each stage's start being the one
    before it in this chain."""
    settled, entries = {}, {}
    for name in names:
        config, explicit, sources = configs[name]
        previous, number = methods.previous_stage(name), methods.parse_stage(name)[1]
        start = (previous, settled[previous], entries[previous]) if previous in settled else None
        lines, settled[name] = stage.show_config(name, config, explicit, sources, start)
        chain = entries.get(previous, [])
        entries[name] = chain if name.startswith("ret_") else chain + [
            {"task": number, "l2": settled[name]["l2"], "pooling": settled[name]["pooling"]}]
        print("\n".join(lines) + "\n")


def ensure_data(args, numbers):
    """Make the synthetic data if the default folder has none; otherwise every task file must exist."""
    data_dir = Path(args.data_dir)
    missing = [tasks.task(k).file for k in numbers if not (data_dir / tasks.task(k).file).exists()]
    if missing and args.data_dir == settings.DEFAULTS["data_dir"] and not any(data_dir.glob("*.csv")):
        print(f"{data_dir} has no TTL files: writing the synthetic data set there")
        for line in synthetic_data.write_synthetic(data_dir):
            print("  " + line)
    elif missing:
        raise data_loader.DataError(data_dir / missing[0], "file not found (pick tasks with --tasks, e.g. 1-4)")


def evaluated_tasks(method, name, finished):
    """Finished tasks to score with checkpoint `name`: every earlier one for methods with one
    shared model (Conure, SinMoAll, HAT, TERACON), else only the stage's own task."""
    phase, number = methods.parse_stage(name)
    if method in ONE_MODEL:
        return [k for k in finished if k <= number]
    return [number] if number in finished else []


def run(args):
    numbers = parse_tasks(args.tasks)
    if args.method not in METHODS:
        raise settings.ConfigError(f"--method={args.method}: choose one of {', '.join(METHODS)}")
    if args.hat_optimizer and args.method != "hat":
        raise settings.ConfigError(f"--hat_optimizer={args.hat_optimizer}: a setting of HAT's stages (--method=hat), "
                                   f"not of {args.method}'s")
    names = methods.stage_names(args.method, numbers)
    if args.show_config:  # no work: neither the output folder nor the synthetic data is made
        data_settings = presets.DataSettings(args.data_dir) if args.preset == "converged" else None
        return show_configs(names, {name: stage_config(name, args, data_settings) for name in names})
    out_dir = paths.output_dir(args.out_dir, "out_dir")
    ensure_data(args, numbers)
    task_data = TaskDataCache(args.data_dir, out_dir / "Models" / names[0])
    data_settings = presets.DataSettings(args.data_dir) if args.preset == "converged" else None
    if data_settings:
        print(f"converged preset: settings tuned for {data_settings.name}")
    configs = {name: stage_config(name, args, data_settings) for name in names}
    for name, (config, _, _) in configs.items():  # every stage's settings and outputs, before the first one trains
        stage.check_config(name, config)
    rows, stage_seconds, finished = [], {}, set()
    started = time.time()
    for name in names:
        phase, number = methods.parse_stage(name)
        print(f"\n=== {name} ===")
        config, explicit, _ = configs[name]
        result = stage.run_stage(name, config, explicit, reuse=True)
        stage_seconds[name] = result["wall_seconds"]
        if phase != "tp":
            finished.add(number)
        for k in evaluated_tasks(args.method, name, finished):
            if k == number and phase != "tp":
                scored = result
            else:
                scored = evaluate.evaluate_task(k, name, args.data_dir, args.out_dir, data=task_data[k])
            rows.append(summary_row(args.method, k, name, scored, out_dir / "Models"))
    baselines = {k: simple_baselines_of(task_data, k, out_dir, args.seed) for k in numbers}
    write_summary(out_dir, args, rows, baselines, stage_seconds, time.time() - started)


def simple_baselines_of(task_data, number, out_dir, seed):
    """{"trivial": metrics, "strong": metrics, "strong_name": name} of the task's simple baselines
    (simple_baselines.py) on its split, computed once per out_dir and data and kept in
    Results/BASELINES_FILE."""
    data = task_data[number]
    key = json.dumps([number, task_data.fingerprint(number), data.n_train, data.n_valid, data.n_test, seed])
    path = out_dir / "Results" / BASELINES_FILE
    known = checkpoint.read_json(path) if path.exists() else {}
    if key not in known:
        name, strong = simple_baselines.strong(data, seed)
        known[key] = {"trivial": simple_baselines.popularity(data), "strong": strong, "strong_name": name,
                      "trivial_name": simple_baselines.trivial_name(data)}
        checkpoint.write_json(known, path)
    return known[key]


class TaskDataCache:
    """Split data of each task, parsed once with the vocabulary and split of the chain's first stage."""

    def __init__(self, data_dir, first_checkpoint):
        self.data_dir, self.first_checkpoint, self.loaded = data_dir, Path(first_checkpoint), {}

    def config(self):
        return {**checkpoint.read_json(self.first_checkpoint / "config.json"), "data_dir": self.data_dir}

    def __getitem__(self, number):
        if number not in self.loaded:
            vocab = data_loader.Vocab.load(self.first_checkpoint / "vocab.json")
            self.loaded[number] = data_loader.load_task_data(number, self.config(), vocab)
        return self.loaded[number]

    def fingerprint(self, number):
        return data_loader.fingerprints(self.config(), number)


def main_metric(number):
    return metrics.main_metric(tasks.task(number).kind)


def summary_row(method, number, name, result, models_dir):
    """One evaluation of task `number` with checkpoint `name`: metrics, score hash and its settings,
    and the weight-level proof against the task's own checkpoint (empty for that checkpoint)."""
    keep = ("MRR@5", "HR@5", "NDCG@5", "accuracy", "pairwise_accuracy", "n_eval", "scores_sha256")
    row = {"method": method, "task": number, "task_name": tasks.task(number).name, "stage": name,
           **{k: result[k] for k in keep if k in result}, "eval_settings": json.dumps(result.get("eval_settings")),
           "proof_compared": None, "proof_identical": None}
    if methods.own_stage(methods.parse_stage(name)[0], number) != name:
        found = proof.prove_stage(number, name, models_dir)
        row.update({"proof_compared": found.compared, "proof_identical": found.identical})
    return row


def proof_text(row):
    if pd.isna(row["proof_compared"]):
        return "own"
    return f"{int(row['proof_identical']):,}/{int(row['proof_compared']):,}"


def task_verdict(task_rows):
    """(unchanged, text) for one task's evaluations: its score hashes, compared like with like,
    and the weight-level proofs against its own checkpoint."""
    hashes = metrics.hash_verdict([(r["scores_sha256"], json.loads(r["eval_settings"])) for r in task_rows])
    proofs = [r for r in task_rows if not pd.isna(r["proof_compared"])]
    weights_kept = all(r["proof_compared"] == r["proof_identical"] for r in proofs)
    text = f"scores {hashes}" + (
        f"; {'every parameter it reads bit-identical' if weights_kept else 'the parameters it reads changed'}"
        if proofs else "")
    return hashes == "bit-identical" and weights_kept, text


def metric_series(rows):
    """{task: [its main metric at its own stage, then after each later stage]} of the summary rows."""
    return {k: [r[main_metric(k)] for r in rows if r["task"] == k] for k in sorted({r["task"] for r in rows})}


def forgetting_lines(rows, method):
    """Each earlier task's main metric at its own stage and after the last stage, its forgetting (the
    best before the last stage minus the last), its largest drop over every later stage, the share of
    the parameters it reads that changed on the way (the weight-level proof's count), and the backward
    transfer per kind of metric (metrics.forgetting)."""
    if method not in ONE_MODEL:
        return ["Each task has a model of its own under this method: no later stage changes it."]
    found = metrics.forgetting(metric_series(rows), main_metric)
    lines = ["How much each earlier task lost: forgetting = the best it scored before the last stage (its own "
             "included) minus the last stage's (Chaudhry et al., 2018); largest drop = its own stage's metric minus "
             "the lowest after any later stage (negative: never below its own); the share of the parameters it reads "
             "that are not bit-identical any more.", "",
             "| task | metric | at its own stage | after the last stage | forgetting | largest drop | "
             "parameters it reads that changed |", "|---|---|---|---|---|---|---|"]
    for k, largest in found["largest_drop"].items():
        own, *later = [r for r in rows if r["task"] == k]
        last, metric = later[-1], main_metric(k)
        changed = last["proof_compared"] - last["proof_identical"]
        lines.append(f"| T{k} {tasks.task(k).name} | {metric} | {own[metric]:.4f} | {last[metric]:.4f} | "
                     f"{found['forgetting'][k]:+.4f} | {largest:+.4f} | {changed / last['proof_compared']:.1%} "
                     f"({changed:,} of {last['proof_compared']:,}) |")
    for metric, bwt in found["bwt"].items():
        lines += ["", f"Backward transfer on {metric} (BWT: the mean over the earlier tasks scored by it of the last "
                      f"stage's metric minus their own): {bwt:+.4f}."]
    return lines


def gate_lines(results, stage_names):
    """HAT's and TERACON's gates after each stage (Results/<stage>.json's "gates"): for every task,
    the shares of its embedding entries whose sign changed since initialisation and of its channels
    open and saturated at smax, and HAT's regulariser."""
    lines = ["Per task after each stage, at smax: the share of its gate embedding that changed sign since "
             "initialisation, the shares of its channels open (gate > 0.5) and saturated (within 0.01 of 0 or 1), "
             "and (HAT) its regulariser's value.", "",
             "| stage | task | sign changed | open | saturated | regulariser |", "|---|---|---|---|---|---|"]
    for name in stage_names:
        for task, g in checkpoint.read_json(results / f"{name}.json").get("gates", {}).items():
            regulariser = f"{g['regulariser']:.4f}" if "regulariser" in g else ""
            lines.append(f"| {name} | {task} | {g['sign_changed']:.1%} | {g['open']:.1%} | {g['saturated']:.1%} | "
                         f"{regulariser} |")
    return lines


def command_line(args):
    """The run_all.py command that gives these results."""
    options = {k: getattr(args, k) for k in ("method", "data_dir", "out_dir", "tasks", "preset", "seed", "prune_ratio",
                                             *CHAIN_OPTIONS, "class_loss", "item_loss", "later_learning_rate",
                                             "hat_optimizer")}
    options["dilations"] = options["dilations"] and ",".join(map(str, options["dilations"]))
    extension = "" if args.extension is None else " --extension" + (
        "=" + ",".join(f"{k}={v}" for k, v in args.extension.items()) if args.extension else "")
    return "python run_all.py " + " ".join(f"--{k}={v}" for k, v in options.items() if v is not None) + extension


def suffix(method):
    return "" if method == "conure" else f"_{method}"


def write_summary(out_dir, args, rows, baselines, stage_seconds, wall):
    results = out_dir / "Results"
    table = pd.DataFrame(rows)
    table.to_csv(results / f"summary{suffix(args.method)}.csv", index=False)
    stages = list(dict.fromkeys(table["stage"]))
    numbers = sorted(set(table["task"]))
    matrix = np.full((len(numbers), len(stages)), np.nan)
    for row in rows:
        matrix[numbers.index(row["task"]), stages.index(row["stage"])] = row[main_metric(row["task"])]
    lines = [f"# {args.method} on {args.data_dir}", "",
             f"Command: `{command_line(args)}`  ",
             f"Backend {stage.trainer.backend()}; every number below is on the whole held-out split; wall times are in "
             f"timings{suffix(args.method)}.md.", "",
             "## Main metric after each stage (HR@5 for item tasks, accuracy for classification)", "",
             "Each cell: the metric, the first 8 hex digits of the held-out score hash, and the weight-level "
             "proof against the task's own checkpoint (parameters the task reads that are bit-identical / "
             "compared; `own` in that checkpoint). A hash depends on the evaluation settings, the hardware and "
             "the library build; the proof does not.", "",
             "| task | " + " | ".join(stages) + " | since the task finished |",
             "|---|" + "---|" * len(stages) + "---|"]
    cells = {(r["task"], r["stage"]): f"{r[main_metric(r['task'])]:.4f} `{r['scores_sha256'][:8]}` {proof_text(r)}"
             for r in rows}
    for k in numbers:
        task_rows = [r for r in rows if r["task"] == k]
        verdict = task_verdict(task_rows)[1] if len(task_rows) > 1 else "(no later stage)"
        lines.append(f"| T{k} {tasks.task(k).name} | " + " | ".join(cells.get((k, s), "") for s in stages)
                     + f" | {verdict} ({plural(len(task_rows), 'evaluation')}) |")
    lines += ["", "## Forgetting", ""] + forgetting_lines(rows, args.method)
    if args.method in methods.RULES and methods.RULES[args.method].gates:
        lines += ["", "## Gates", ""] + gate_lines(results, list(stage_seconds))
    lines += ["", "## After the last stage, against the simple baselines", "",
              "Fitted on the same training examples and scored on the same held-out split with the same metrics "
              "(simple_baselines.py): popularity or the majority label, and a strong simple baseline (a first-order "
              "Markov chain for T1, item-to-target co-occurrence for item tasks, bag-of-items logistic regression "
              "for classification). The margin is over the better of the two.", "",
              "| task | metric | model | popularity / majority | strong simple baseline | margin |",
              "|---|---|---|---|---|---|"]
    for k in numbers:
        last, base = [r for r in rows if r["task"] == k][-1], baselines[k]
        for metric in metrics.reported(tasks.task(k).kind):
            best = max(base["trivial"][metric], base["strong"][metric])
            lines.append(f"| T{k} {tasks.task(k).name} | {metric} | {last[metric]:.4f} | {base['trivial'][metric]:.4f} | "
                         f"{base['strong'][metric]:.4f} ({base['strong_name']}) | {last[metric] - best:+.4f} |")
    (results / f"summary{suffix(args.method)}.md").write_text("\n".join(lines) + "\n")
    times = [f"# Wall times of `run_all.py --method={args.method}`", "", f"Whole pipeline: {wall / 60:.1f} min.", "",
             "| stage | seconds |", "|---|---|"] + [f"| {name} | {sec:.0f} |" for name, sec in stage_seconds.items()]
    (results / f"timings{suffix(args.method)}.md").write_text("\n".join(times) + "\n")
    plot_matrix(matrix, numbers, stages, results / f"forgetting{suffix(args.method)}.png", args.method)
    plot_curves(results, list(stage_seconds), results / f"curves{suffix(args.method)}.png", args.method)
    print("\n" + "\n".join(lines + [""] + times))


def plot_matrix(matrix, numbers, stages, path, method):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.1 * len(stages) + 2.5, 0.6 * len(numbers) + 1.8))
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(stages)), stages, rotation=45, ha="right")
    ax.set_yticks(range(len(numbers)), [f"T{k} {tasks.task(k).name} ({main_metric(k)})" for k in numbers])
    for (i, j), value in np.ndenumerate(matrix):
        if not np.isnan(value):
            ax.text(j, i, f"{value:.3f}", ha="center", va="center", fontsize=8,
                    color="white" if value < np.nanmean(matrix) else "black")
    ax.set_title(f"{method}: each task's held-out metric after every later stage")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(results, stage_names, path, method):
    """Learning curves of every stage: training loss per epoch and, with a validation slice, the
    selection metric on it, the chosen epoch marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(4, len(stage_names))
    fig_rows = -(-len(stage_names) // columns)
    fig, axes = plt.subplots(fig_rows, columns, figsize=(3.6 * columns, 2.6 * fig_rows), squeeze=False)
    for ax, name in zip(axes.ravel(), stage_names):
        result = checkpoint.read_json(results / f"{name}.json")
        losses = result["loss_history"]
        ax.plot(range(1, len(losses) + 1), losses, color="tab:blue")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("training loss", color="tab:blue", fontsize=8)
        if result.get("valid_curve"):
            metric, curve = result["selection_metric"], result["valid_curve"]
            valid = ax.twinx()
            valid.plot([c["epoch"] for c in curve], [c[metric] for c in curve], color="tab:orange", marker=".")
            valid.axvline(result["best_epoch"], color="tab:orange", linestyle=":")
            valid.set_ylabel(f"validation {metric}", color="tab:orange", fontsize=8)
    for ax in axes.ravel()[len(stage_names):]:
        ax.axis("off")
    fig.suptitle(f"{method}: learning curves (dotted: the epoch kept)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_parser():
    """The command line this script accepts (tests/test_docs.py checks the docs against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_dir", default=settings.DEFAULTS["data_dir"])
    parser.add_argument("--out_dir", default=settings.DEFAULTS["out_dir"])
    parser.add_argument("--tasks", default=f"1-{len(tasks.TASKS)}", help="e.g. 1-4 (the TTL sample has T1-T4)")
    parser.add_argument("--preset", choices=presets.PRESETS, default="quick")
    parser.add_argument("--method", default="conure", help="one of " + ", ".join(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prune_ratio", type=float, default=None, help="Conure: prune ratio of every task")
    parser.add_argument("--channels", type=int, default=None, help="width of fresh models (default: the preset's)")
    parser.add_argument("--dilations", type=parse_dilations, default=None,
                        help="one residual block per entry, e.g. 1,4,1,4,1,4,1,4 (default: the preset's)")
    parser.add_argument("--train_share", type=float, default=None,
                        help="train on this nested random share of the training users (default 1: all; the held-out "
                             "and validation users stay the same)")
    parser.add_argument("--min_item_count", type=int, default=None,
                        help="k-core: T1 items seen fewer than this often in the training users become <unk>, then "
                             "training users left with fewer items are dropped (default 0: off)")
    parser.add_argument("--class_loss", choices=presets.CLASS_LOSSES, default=None,
                        help="classification tasks: the release's logistic loss against one other label, or a "
                             "full softmax (default: the preset's)")
    parser.add_argument("--item_loss", choices=presets.ITEM_LOSSES, default=None,
                        help="item tasks after T1: the release's BPR with one negative, or a full softmax over the "
                             "task's targets (default: the preset's; TERACON always takes the full softmax)")
    parser.add_argument("--later_learning_rate", type=float, default=None,
                        help="the learning rate of T2 and later tasks, over the preset's (TERACON's T3 on: a tenth of "
                             "it, as its release's ratio); how the successors' rate is chosen (docs/hat.md)")
    parser.add_argument("--hat_optimizer", choices=presets.HAT_OPTIMIZERS, default=None,
                        help="HAT's stages: the preset's Adam (default), or SGD at lr 0.05 on its release's schedule "
                             "(the rate divided by 3 after 5 epochs without a lower validation loss, down to 1e-4; "
                             "the lowest loss's epoch kept; docs/hat.md)")
    parser.add_argument("--extension", nargs="?", const="", default=None, type=parse_extension,
                        help="Conure beyond the release (docs/extension.md): presets.EXTENSION's settings, the "
                             "data set's choices, and any given here, e.g. --extension=embedding=owned,pooling=last")
    parser.add_argument("--verbose", type=int, default=1)
    parser.add_argument("--show_config", action="store_true",
                        help="print every stage's settings with where each came from, then stop without work")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        run(args)
    except (settings.ConfigError, paths.PathError, data_loader.DataError, checkpoint.CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
