"""Reading the archived results: a task's results over seeds, their spread, the simple baselines,
the forgetting summaries, and the comparisons that count a difference only beyond the spread."""
import json
from pathlib import Path

import numpy as np

import evaluate
import methods
import metrics
import presets
import run_all
from wording import plural
import tasks
from tools.reproduction import plan
from tools.reproduction.plan import archived, method_runs, run_dir


def load_json(path):
    return json.loads(Path(path).read_text()) if Path(path).exists() else None


def metrics_of(number):
    return metrics.reported(tasks.task(number).kind)


def numbers_of(dataset):
    return run_all.parse_tasks(plan.DATASETS[dataset]["tasks"])


def final_stage(method, number, last):
    """The stage whose model answers task `number` once the method has learned its `last` task: the
    last stage's for a method with one model (run_all.ONE_MODEL), the task's own for the others."""
    return methods.own_stage(method, last if method in run_all.ONE_MODEL else number)


def collect(directories, method, number, last=None):
    """Results of task `number`, one per run directory that has them: at its own stage, or, given the
    data set's `last` task, with the method's model after it (final_stage: the field's reading)."""
    own = methods.own_stage(method, number)
    name = own if last is None else final_stage(method, number, last)
    found = [load_json(archived(d) / (f"{own}.json" if name == own else evaluate.result_name(number, name)))
             for d in directories]
    return [r for r in found if r]


def machine(result):
    """The kind of machine a result was computed on, shortly: "AMD EPYC", "Intel Xeon" ("unknown"
    where the results file does not record it)."""
    settings = result.get("eval_settings") or {}
    device = (json.loads(settings) if isinstance(settings, str) else settings).get("device")
    if not device:
        return "unknown"
    name = device.split(",")[0].removeprefix("CPU ").replace("(R)", "").replace(" Processor", "")
    return " ".join(name.split())


def by_machine(results):
    """{machine: the results computed on it}, in the order first seen."""
    found = {}
    for result in results:
        found.setdefault(machine(result), []).append(result)
    return found


def machine_gap(pairs, metric):
    """The largest difference in `metric` between one seed's run on one machine and on another:
    `pairs` is [(results of a run, results of the same run repeated elsewhere)]; None without one."""
    gaps = [abs(a[metric] - b[metric]) for a, b in pairs if machine(a) != machine(b)]
    return max(gaps) if gaps else None


def judge(mine, theirs, metric, gap=None):
    """compare() on one machine where both sides have two seeds or more on it (the one giving the more),
    else between each side's largest group, across machines with the spread widened by `gap`
    (machine_gap; None: not judged). Returns (verdict, difference, noise, where: the machine or
    "A vs B", the gap added to the noise or None)."""
    a, b = by_machine(mine), by_machine(theirs)
    common = [m for m in a if m in b and min(len(a[m]), len(b[m])) > 1]
    if common:
        where = max(common, key=lambda m: min(len(a[m]), len(b[m])))
        return (*compare(a[where], b[where], metric), where, None)
    x, y = max(a, key=lambda m: len(a[m])), max(b, key=lambda m: len(b[m]))
    if x == y:
        return (*compare(a[x], b[y], metric), x, None)
    if gap is None:
        return "two machines", spread(a[x], metric)[0] - spread(b[y], metric)[0], float("nan"), f"{x} vs {y}", None
    return (*compare(a[x], b[y], metric, gap), f"{x} vs {y}", gap)


def values(results, metric):
    return np.array([r[metric] for r in results])


def spread(results, metric):
    """(mean, standard deviation over seeds with ddof=1, n); the deviation is 0 for one seed."""
    v = values(results, metric)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0, len(v)


def cell(results, metric, digits=4):
    if not results:
        return "n/a"
    mean, std, n = spread(results, metric)
    return f"{mean:.{digits}f}" if n == 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def counted_cell(results, metrics):
    """The metrics' cells joined by ' / ', then how many seeds they cover: '0.7174 ± 0.0056 (n=3)'."""
    return " / ".join(cell(results, m) for m in metrics) + f" (n={len(results)})"


def baselines(dataset, directory=None):
    """Simple baselines of every task, as run_all stored them in run `directory` (default: the
    seed-0 run; None before it ran)."""
    path = archived(directory or run_dir(dataset, 0)) / run_all.BASELINES_FILE
    if not path.exists():
        return None
    found = {}
    for key, value in load_json(path).items():
        found[json.loads(key)[0]] = value
    return found


def stage_results(directory):
    return {p.stem: load_json(p) for p in sorted(archived(directory).glob("*.json"))
            if not p.name.endswith(".timing.json") and "stage" in (load_json(p) or {})}


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


def zero_forgetting_line(directories, label):
    """Whether, in Conure runs `directories`, every earlier task stayed bit-identical after every later stage."""
    tables = [t for t in (forgetting_rows(d, "conure") for d in directories)
              if t is not None and t.groupby("task").size().max() > 1]  # a run with a later stage
    if not tables:
        return []
    kept = all(forgotten_nothing(rows) for t in tables for _, rows in t.groupby("task"))
    return [f"- **Zero forgetting {'holds' if kept else 'DOES NOT hold'}** {label}: every parameter an "
            f"earlier task reads is bit-identical after every later stage, and its held-out scores hash the same "
            f"({plural(len(tables), 'run')}, every stage)."]


JUDGED = ("better", "tie", "worse")  # what `compare` and `judge` say of a judged pair; "one seed" and
# "two machines" (no seed run on both) are not judged


def compare(mine, theirs, metric, widen=0.0):
    """'better', 'worse' or 'tie' for two sets of seeds: a difference counts only when it is larger
    than the two standard deviations together (plus `widen`: two machines' gap). With one seed on
    either side there is no spread to judge by: 'one seed'."""
    a, b = spread(mine, metric), spread(theirs, metric)
    difference, noise = a[0] - b[0], a[1] + b[1] + widen
    if min(a[2], b[2]) < 2:
        return "one seed", difference, noise
    verdict = "better" if difference > noise else "worse" if -difference > noise else "tie"
    return verdict, difference, noise


def place(results, bar, metric):
    """'above', 'below' or 'level' against a fixed number: a gap counts when it is larger than the
    seeds' standard deviation plus the standard error of a share measured on the held-out users. With
    one seed there is no spread to judge by: 'one seed'."""
    mean, std, n = spread(results, metric)
    if n < 2:
        return "one seed"
    noise = std + np.sqrt(bar * (1 - bar) / min(r["n_eval"] for r in results))
    return "above" if mean - bar > noise else "below" if bar - mean > noise else "level"


def place_text(found):
    """`place`'s answer in a sentence: 'above', 'below', 'level with', 'not judged (one seed)'."""
    return {"level": "level with", "one seed": "not judged (one seed)"}.get(found, found)


def best_simple_baseline(fitted_task, metric):
    """(name, score) of the better simple baseline of one task: the trivial one (popularity or the
    majority label) or the strong one (Markov chain, co-occurrence or logistic regression)."""
    part = max(("trivial", "strong"), key=lambda p: fitted_task[p][metric])
    return fitted_task[f"{part}_name"], fitted_task[part][metric]


def baseline_mean(fitted, part, k):
    """Mean over the runs' simple baselines (`fitted`) of task k's `part` baseline's main metric."""
    return float(np.mean([b[k][part][run_all.main_metric(k)] for b in fitted if k in b]))


def setting_results(spec, values, directory):
    """Per setting: (value, the simple baselines its runs fitted, {method: {task: its results over
    seeds}} for the methods that finished a task)."""
    numbers = numbers_of(spec["dataset"])
    for value in values:
        runs = [directory(value, seed) for seed in spec["seeds"]]
        fitted = [b for b in (baselines(spec["dataset"], d) for d in runs) if b]
        per_method = {method: {k: collect(runs, method, k) for k in numbers} for method in spec["methods"]}
        yield value, fitted, {method: found for method, found in per_method.items() if any(found.values())}


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
    return t1_config({d for m in plan.METHODS for d in method_runs(dataset, m)})


def architecture_text(dataset):
    """The backbone the dataset's runs used, e.g. '256 channels, dilations [1, 4]', from the first
    archived T1 result (or the preset's for the data, before any ran)."""
    config = first_t1_config(dataset)
    if config:
        return f"{config['channels']} channels, dilations {config['dilations']}"
    data_dir = Path(plan.DATASETS[dataset]["data_dir"])
    if not (data_dir / tasks.task(1).file).exists():
        return "the converged preset's backbone (data not found here)"
    settings = presets.DataSettings(data_dir)
    architecture = settings.converged()["architecture"]
    return f"{architecture['channels']} channels, dilations {architecture['dilations']} ({settings.name})"


def selection_text(config):
    """How a T1 stage chose its epoch, e.g. "patience 5, on each validation user's last 20 items"."""
    positions = config.get("valid_positions", 1)
    scored = f"each validation user's last {positions} items" if positions > 1 else "each validation user's last item"
    return f"patience {config['patience']}, on {scored}"


def t1_selection_text(dataset):
    config = first_t1_config(dataset)
    return f" T1 selection: {selection_text(config)}." if config else ""
