"""The report's tables: quality, storage, epochs, forgetting, the paper's claims, and the tables
of the side experiments (classification losses, the paper's width, how much data)."""
import numpy as np

import run_all
import tasks
from tools.reproduction import plan, verdicts
from tools.reproduction.plan import archived, heads_dir, method_runs, paper_width_dir, run_dir, select_dir
from tools.reproduction.results import (JUDGED, architecture_text, baseline_mean, baselines, best_simple_baseline,
                                        by_machine, collect, counted_cell, first_t1_config, forgetting_rows,
                                        judge, load_json, machine, metrics_of, numbers_of, place, place_text,
                                        selection_text, setting_results, spread, stage_order, stage_results,
                                        t1_config, zero_forgetting_line)


def baseline_row(found, numbers, metrics, part="strong", label="strong simple baseline", trailing="", blank=0):
    """A table row of the `part` ("trivial" or "strong") baselines of tasks `numbers`: metrics(k) per cell,
    after `blank` empty columns."""
    names = ", ".join(dict.fromkeys(found[k][f"{part}_name"] for k in numbers if k in found))
    return (f"| {label} ({names}) | " + "| " * blank + " | ".join(
        " / ".join(f"{found[k][part][m]:.4f}" for m in metrics(k)) if k in found else "n/a" for k in numbers)
        + f" |{trailing}")


def machine_groups(per_task):
    """{machine: [each task's results computed on it]} of a row's results per task."""
    machines = dict.fromkeys(machine(r) for results in per_task for r in results)
    return {m: [[r for r in results if machine(r) == m] for results in per_task] for m in machines}


def quality_table(dataset, final=True, rows=None, metrics=metrics_of):
    """Each row's results per task (mean ± std over seeds; `rows`: (label, run folders, method), by
    default every method's, plan.method_rows), one line per row and machine: with the method's model
    after the last task (`final`: how continual learning reads a learner), or at each task's own stage.
    A method with a model per task answers with it either way. `metrics(k)`: task k's columns."""
    numbers = numbers_of(dataset)
    lines = ["| method | machine | " + " | ".join(f"T{k} {tasks.task(k).name} {'/'.join(metrics(k))}"
                                                for k in numbers) + " |", "|---|---|" + "---|" * len(numbers)]
    for label, directories, method in rows or plan.method_rows(dataset):
        groups = machine_groups([collect(directories, method, k, numbers[-1] if final else None) for k in numbers])
        for where, per_task in groups.items():
            lines.append(f"| {label} | {where} | " + " | ".join(counted_cell(r, metrics(k))
                                                               for r, k in zip(per_task, numbers)) + " |")
        if not groups and label in plan.LABELS.values():
            lines.append(f"| {label} | | " + " | ".join("n/a" for _ in numbers) + " |")
    found = baselines(dataset)
    if found:
        lines.append(baseline_row(found, numbers, metrics, "trivial", "popularity / majority", blank=1))
        lines.append(baseline_row(found, numbers, metrics, blank=1))
    return lines


def selection_table():
    """The successors' later-task learning rate (plan.SELECT): each candidate's best validation
    score on T2 (seed 0), the epoch it was reached, and the one the preset keeps (presets.TUNED)."""
    number, metric = 2, "MRR@5"
    lines = [f"| method | learning rate of T2 | best validation {metric} on T2 (epoch) | kept |", "|---|---|---|---|"]
    for method, rates in plan.SELECT["rates"].items():
        for rate in rates:
            result = load_json(archived(select_dir(method, rate)) / f"{method}_t{number}.json")
            if result:
                best = max(result["valid_curve"], key=lambda point: point[metric])
                kept = "yes" if rate == result_rate_kept(method) else ""
                lines.append(f"| {plan.LABELS[method]} | {rate:g} | {best[metric]:.4f} ({best['epoch']}) | {kept} |")
    return lines if len(lines) > 2 else ["(not run yet)"]


def result_rate_kept(method):
    """The T2 learning rate of `method`'s main seed-0 run, as its results file records it."""
    result = load_json(archived(run_dir(plan.SELECT["dataset"], plan.SELECT["seed"])) / f"{method}_t2.json")
    return result["config"]["learning_rate"] if result else None


def storage_table(dataset):
    numbers = numbers_of(dataset)
    lines = ["| method | " + " | ".join(f"T{k}" for k in numbers) + " | all tasks |",
             "|---|" + "---|" * (len(numbers) + 1)]
    for method in plan.METHODS:
        stored = [collect(method_runs(dataset, method), method, k) for k in numbers]
        counts = [r[0]["stored_parameters"] if r else None for r in stored]
        total = sum(v for v in counts if v is not None)
        lines.append(f"| {plan.LABELS[method]} | " + " | ".join("n/a" if v is None else f"{v:,}" for v in counts)
                     + f" | {total:,} |")
    return lines


def epochs_table(dataset):
    """Epochs each stage trained and the epoch it kept (mean over seeds), and its wall time."""
    rows = {}
    for directory in sorted({d for m in plan.METHODS for d in method_runs(dataset, m)}):
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


def simple_baseline_lines(dataset):
    """Conure and FineAll per task and metric against the better of the two simple baselines, judged
    by `place` like every other comparison with a fixed number."""
    found, lines = baselines(dataset), []
    for method in (m for m in ("conure", "finall") if m in plan.METHODS and found):
        judged = []
        for k in (k for k in numbers_of(dataset) if k in found):
            results = collect(method_runs(dataset, method), method, k)
            for metric in (m for m in metrics_of(k) if m != "NDCG@5") if results else ():
                best = best_simple_baseline(found[k], metric)[1]
                mean, std, n = spread(results, metric)
                judged.append(f"T{k} {metric} {place_text(place(results, best, metric))} "
                              f"({mean:.4f}{f' ± {std:.4f}' if n > 1 else ''} vs {best:.4f}, n={n})")
        if judged:
            where = ", ".join(by_machine(collect(method_runs(dataset, method), method, 1)))
            lines.append(f"- {plan.LABELS[method]} ({where}) against the better of the two simple baselines (a gap "
                         f"counts beyond the seeds' std plus the held-out standard error): {', '.join(judged)}.")
    return lines


def claim_lines(dataset):
    """Statements on the paper's claims, from the numbers and their spread over seeds."""
    lines = zero_forgetting_line(method_runs(dataset, "conure"), "for Conure")
    sinmoall = forgetting_rows(run_dir(dataset, 0), "sinmoall")
    if sinmoall is not None:
        changes = {k: rows.iloc[-1][run_all.main_metric(k)] - rows.iloc[0][run_all.main_metric(k)]
                   for k, rows in sinmoall.groupby("task") if len(rows) > 1}
        drops = [f"T{k}" for k, change in changes.items() if change < 0]
        lines.append(f"- **SinMoAll forgets**: after later stages the main metric of its earlier tasks moves by "
                     f"{', '.join(f'T{k} {c:+.4f}' for k, c in changes.items())} (seed 0). Drops: "
                     f"{', '.join(drops) or 'none'}.")
    lines += simple_baseline_lines(dataset)
    return lines + verdicts.conure_lines(dataset) + verdicts.teracon_claim_lines(dataset) + \
        verdicts.hat_optimizer_lines(dataset)


def heads_table():
    """Conure's T4-T6 with each classification loss, from the same T1-T3 checkpoints."""
    dataset = plan.HEADS["dataset"]
    numbers = [k for k in numbers_of(dataset) if tasks.task(k).kind == "class"]
    preset_run = collect(method_runs(dataset, "conure"), "conure", numbers[0]) if numbers else []
    if not preset_run:
        return ["(not run yet)"]
    used = "softmax" if preset_run[0]["config"]["full_softmax"] else "logistic"
    loss = "logistic" if used == "softmax" else "softmax"
    seeds = plan.HEADS["seeds"]
    runs = {used: [run_dir(dataset, s) for s in seeds], loss: [heads_dir(loss, s) for s in seeds]}
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


def item_loss_rows():
    """(label, run folders, method, last task) of the item-loss comparison: Conure's runs of T1-T3 with
    each loss (the same T1 per seed; Conure's answers after T3 are its own), and TERACON's main runs read
    with its final model."""
    spec = plan.ITEM_LOSS
    labels = {"bpr": "Conure, BPR with one negative (the release, the preset)",
              "softmax": "Conure, full softmax (TERACON's loss)"}
    rows = [(labels[loss], [plan.item_loss_dir(loss, s) for s in spec["seeds"]], "conure", None)
            for loss in spec["losses"]]
    last = numbers_of(spec["dataset"])[-1]
    return rows + [(f"TERACON, as its code trains it, after T{last}", method_runs(spec["dataset"], "teracon"),
                    "teracon", last)]


def item_loss_table():
    """Conure's T1-T3 with each item-task loss beside TERACON's final model, with the machine of each."""
    spec = plan.ITEM_LOSS
    dataset, numbers = spec["dataset"], run_all.parse_tasks(spec["tasks"])
    lines = ["| run | machine | " + " | ".join(f"T{k} {tasks.task(k).name} MRR@5 / HR@5" for k in numbers) + " |",
             "|---|---|" + "---|" * len(numbers)]
    for label, directories, method, last in item_loss_rows():
        found = [collect(directories, method, k, last) for k in numbers]
        where = ", ".join(dict.fromkeys(machine(r) for results in found for r in results))
        lines.append(f"| {label} | {where} | " + " | ".join(counted_cell(r, ["MRR@5", "HR@5"]) for r in found) + " |")
    found = baselines(dataset)
    if found:
        lines.append(baseline_row(found, numbers, lambda k: ["MRR@5", "HR@5"], blank=1))
    return lines


def item_loss_verdicts():
    """Conure with the full softmax against Conure with BPR and against TERACON's final model on the
    later item tasks, a difference counted only beyond the spread over seeds (on one kind of machine)."""
    spec = plan.ITEM_LOSS
    later = [k for k in run_all.parse_tasks(spec["tasks"]) if k > 1]
    softmax, bpr = ([plan.item_loss_dir(loss, s) for s in spec["seeds"]] for loss in ("softmax", "bpr"))
    lines = []
    for label, directories, method, last in (("Conure with BPR", bpr, "conure", None),
                                             ("TERACON", *item_loss_rows()[-1][1:])):
        found = []
        for k in later:
            mine, theirs = collect(softmax, "conure", k), collect(directories, method, k, last)
            if mine and theirs:
                verdict, difference, noise, where, _ = judge(mine, theirs, run_all.main_metric(k))
                found.append(f"T{k} {difference:+.4f} ({verdict}; {where})" if verdict not in JUDGED
                             else f"T{k} {difference:+.4f} vs spread {noise:.4f}: {verdict.replace('tie', 'level')} "
                                  f"({where})")
        if found:
            lines.append(f"- Conure with the full softmax against {label} (HR@5): {'; '.join(found)}.")
    return lines


def paper_width_table():
    dataset = plan.PAPER_WIDTH["dataset"]
    numbers = numbers_of(dataset)
    preset_config = first_t1_config(dataset)
    lines = ["| Conure | " + " | ".join(f"T{k} {run_all.main_metric(k)}" for k in numbers) + " | stored parameters |",
             "|---|" + "---|" * (len(numbers) + 1)]
    for label, directories in ((f"{architecture_text(dataset)}, the preset", method_runs(dataset, "conure")),
                               (f"{plan.PAPER_WIDTH['channels']} channels, {len(plan.PAPER_WIDTH['dilations'])} blocks",
                                [paper_width_dir(s) for s in plan.PAPER_WIDTH["seeds"]])):
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


def varied_table(spec, values, directory, label):
    """Methods × setting rows (mean ± std over seeds of each task's main metric, n) beside the simple
    baselines fitted on the same data (deterministic: every seed's run fits the same numbers)."""
    numbers = numbers_of(spec["dataset"])
    lines = [f"| {label} | method | T1 training users | " + " | ".join(
        f"T{k} {run_all.main_metric(k)}" for k in numbers) + " |", "|---|---|---|" + "---|" * len(numbers)]
    for value, fitted, methods in setting_results(spec, values, directory):
        for method, found in methods.items():
            users = f"{np.mean([r['n_train'] for r in found[1]]):,.0f}" if found[1] else "n/a"
            lines.append(f"| {value:g} | {plan.LABELS[method]} | {users} | " + " | ".join(
                counted_cell(found[k], [run_all.main_metric(k)]) for k in numbers) + " |")
        for part, name in (("trivial", "popularity / majority"), ("strong", "strong simple baseline")):
            if fitted:
                cells = [f"{baseline_mean(fitted, part, k):.4f}" for k in numbers]
                lines.append(f"| {value:g} | {name} | | " + " | ".join(cells) + " |")
    return lines


def verdict_table(spec, values, directory, label):
    """Each method's place (see `place`) against the two simple baselines fitted on the same data,
    per setting and task."""
    numbers = numbers_of(spec["dataset"])
    lines = [f"| {label} | method | " + " | ".join(f"T{k}" for k in numbers) + " |",
             "|---|---|" + "---|" * len(numbers)]
    for value, fitted, methods in setting_results(spec, values, directory):
        for method, found in methods.items() if fitted else ():
            lines.append(f"| {value:g} | {plan.LABELS[method]} | " + " | ".join(
                verdict_cell(found[k], fitted, k) for k in numbers) + " |")
    return lines


def verdict_cell(results, fitted, k):
    """'<against popularity or majority> / <against the strong baseline>', or the seed count below two."""
    places = [place(results, baseline_mean(fitted, part, k), run_all.main_metric(k)) for part in ("trivial", "strong")]
    return f"(n={len(results)})" if "one seed" in places else " / ".join(places)


def verdict_lines(spec, values, directory, label):
    return ["", "Against the simple baselines on the same data (popularity or majority / the strong one): above or "
            "below when the gap is larger than the method's standard deviation over seeds plus the baseline's "
            "standard error on the held-out users (sqrt(p(1 - p) / n)), else level.", ""] + \
        verdict_table(spec, values, directory, label)
