"""The report's forgetting tables: each task after every later stage, the comparison of every
method with one shared model (backward transfer and forgetting per kind of metric, each task's
forgetting and largest drop, the parameters a task reads that changed), and the gates of HAT and
TERACON."""
import methods
import metrics
import run_all
import tasks
from tools.reproduction import plan
from tools.reproduction.plan import archived, method_runs
from tools.reproduction.results import (cell, forgetting_rows, forgotten_nothing, load_json, machine,
                                        numbers_of, spread)


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


KINDS = {metrics.main_metric(kind): f"{label}, {metrics.main_metric(kind)}"  # BWT and forgetting per main metric
         for kind, label in (("item", "item tasks"), ("class", "classification"))}


def run_forgetting(table):
    """One run's forgetting from its summary rows: per kind of metric (KINDS) the backward transfer and
    the mean forgetting (metrics.forgetting) over its earlier tasks; per earlier task its forgetting,
    its largest drop over every later stage and the share of the parameters it reads that changed by
    the last stage."""
    series = {k: list(rows[run_all.main_metric(k)]) for k, rows in table.groupby("task", sort=True)}
    found = metrics.forgetting(series, run_all.main_metric)
    per_task = {}
    for k, rows in table.groupby("task", sort=True):
        if k in found["largest_drop"]:
            last = rows.iloc[-1]
            per_task[k] = {"forgetting": found["forgetting"][k], "largest": found["largest_drop"][k],
                           "share": 1 - last["proof_identical"] / last["proof_compared"]}
    summary = {**{f"bwt_{metric}": value for metric, value in found["bwt"].items()},
               **{f"forgetting_{metric}": value for metric, value in found["mean_forgetting"].items()}}
    return summary, per_task


def comparison_rows(dataset):
    """(label, run folders, method) of every row of the quality table whose method has one shared model."""
    return [row for row in plan.method_rows(dataset) if row[2] in run_all.ONE_MODEL]


def forgetting_header(earlier):
    kinds = [f"BWT ({text})" for text in KINDS.values()] + [f"forgetting ({text})" for text in KINDS.values()]
    return ["| method | machine | " + " | ".join(kinds) + " | "
            + " | ".join(f"T{k} {run_all.main_metric(k)}: forgetting / largest drop; parameters changed"
                         for k in earlier) + " |", "|---|---|" + "---|" * (len(kinds) + len(earlier))]


def forgetting_comparison(dataset):
    """Every method with one shared model, one row per machine, mean ± std over seeds: per kind of metric
    the backward transfer (BWT) and the mean forgetting, then each earlier task's forgetting, largest drop
    and share of the parameters it reads that changed. The methods with a model per task forget nothing."""
    earlier = numbers_of(dataset)[:-1]
    lines = forgetting_header(earlier)
    for label, directories, method in comparison_rows(dataset):
        found = {}  # machine -> (run summaries, {task: per-task values})
        for table in (forgetting_rows(d, method) for d in directories):
            if table is not None and table.groupby("task").size().max() > 1:
                summary, per_task = run_forgetting(table)
                runs, tasks_found = found.setdefault(machine(table.iloc[0].to_dict()), ([], {}))
                runs.append(summary)
                for k, values in per_task.items():
                    tasks_found.setdefault(k, []).append(values)
        for where, (runs, tasks_found) in found.items():
            kinds = [cell(runs, f"{part}_{kind}") if all(f"{part}_{kind}" in r for r in runs) else "n/a"
                     for part in ("bwt", "forgetting") for kind in KINDS]
            cells = [f"{cell(tasks_found[k], 'forgetting')} / {cell(tasks_found[k], 'largest')}; "
                     f"{100 * spread(tasks_found[k], 'share')[0]:.1f}% (n={len(tasks_found[k])})"
                     if tasks_found.get(k) else "n/a" for k in earlier]
            lines.append(f"| {label} | {where} | " + " | ".join(kinds + cells) + " |")
    return lines


def gate_rows(directories, method, number, stage):
    """Task `number`'s gate statistics recorded by `stage` in each run that has it."""
    found = [load_json(archived(d) / f"{stage}.json") for d in directories]
    return [r["gates"][f"T{number}"] for r in found if r and f"T{number}" in r.get("gates", {})]


def gates_table(dataset, method):
    """HAT's or TERACON's gates per task at its own stage and after the last stage, mean ± std over
    seeds: the share of its gate embedding that changed sign since initialisation, of its channels
    open at smax (gate > 0.5) and saturated (within 0.01 of 0 or 1), and HAT's regulariser."""
    numbers, directories = numbers_of(dataset), method_runs(dataset, method)
    keys = ["sign_changed", "open", "saturated"] + (["regulariser"] if method == "hat" else [])
    lines = ["| task | after stage | " + " | ".join(k.replace("_", " ") + ("" if k == "regulariser" else " (%)")
                                                   for k in keys) + " |", "|---|---|" + "---|" * len(keys)]
    for k in numbers:
        for stage in dict.fromkeys([methods.own_stage(method, k), methods.own_stage(method, numbers[-1])]):
            found = [{key: g[key] * (1 if key == "regulariser" else 100) for key in keys}
                     for g in gate_rows(directories, method, k, stage)]
            if found:
                lines.append(f"| T{k} {tasks.task(k).name} | {stage} | "
                             + " | ".join(cell(found, key, 4 if key == "regulariser" else 1) for key in keys)
                             + f" (n={len(found)}) |")
    return lines if len(lines) > 2 else ["(not run yet)"]
