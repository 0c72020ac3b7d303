"""The report's section on Conure beyond the release (docs/extension.md): the choice of each setting
on the validation slice, then the runs at the settings chosen beside every method and the simple
baselines (final models), whether it trails any of them, its verdict against Conure, its storage and
wall time beside Conure's and the proof of zero forgetting."""
import numpy as np

import methods
import presets
import run_all
import tasks
from tools.reproduction import plan, tables, verdicts
from tools.reproduction.plan import archived, extension_dir
from tools.reproduction.results import (JUDGED, baselines, best_simple_baseline, by_machine, collect, counted_cell,
                                        load_json, machine, numbers_of, place, place_text, spread, zero_forgetting_line)

LABEL = "Conure with the extension"


def validation_scores(directory, numbers):
    """{task: the best validation score of its own stage's selection metric} of a run folder."""
    found = {}
    for k in numbers:
        result = load_json(archived(directory) / f"ret_t{k}.json")
        if result and result.get("valid_curve"):
            found[k] = max(point[result["selection_metric"]] for point in result["valid_curve"])
    return found


def criterion(scores, reference, numbers):
    """The mean over `numbers` of each task's validation score relative to the reference run's."""
    ratios = [scores[k] / reference[k] for k in numbers if k in scores and reference.get(k)]
    return float(np.mean(ratios)) if len(ratios) == len(numbers) else None


def judged_tasks(key, numbers):
    """The tasks a setting's choice is judged on: those whose stages it reaches (presets.reaches)."""
    return [k for k in numbers if any(presets.reaches(key, phase, k) for phase in methods.CONURE_PHASES)]


def selection_table(dataset):
    """Each step of the choice: every candidate's best validation score per task, and the criterion
    over the tasks the setting reaches (judged_tasks: every task for the embedding, the classification
    tasks for the heads' settings, the later item tasks for their loss), relative to Conure's seed-0 run."""
    numbers = numbers_of(dataset)
    reference = validation_scores(plan.run_dir(dataset, plan.EXTENSION_RUNS["select_seed"]), numbers)
    choices = plan.extension_choices(dataset)
    lines = ["| setting | value | " + " | ".join(f"T{k} valid" for k in numbers) + " | criterion | chosen |",
             "|---|---|" + "---|" * len(numbers) + "---|---|"]
    for key, value, _, folder, _ in plan.extension_trials(dataset):
        scores = validation_scores(folder, numbers)
        if scores:
            mean = criterion(scores, reference, judged_tasks(key, numbers))
            lines.append(f"| {key} | {value} | " + " | ".join(f"{scores[k]:.4f}" if k in scores else ""
                                                             for k in numbers)
                         + f" | {'' if mean is None else f'{mean:.4f}'} | "
                           f"{'yes' if choices.get(key) == value else ''} |")
    return lines if len(lines) > 2 else ["(not run yet)"]


def extension_runs(dataset):
    return [extension_dir(dataset, seed) for seed in plan.EXTENSION_RUNS["seeds"]]


def compared_rows(dataset):
    """(label, run folders, method) of every method the extension is judged against: each method's runs at
    the main settings and HAT with its release's SGD (not the shared-protocol runs)."""
    return plan.method_rows(dataset, shared_protocol=False)


def cost_table(dataset):
    """Parameters stored per task and minutes per task (its stages' wall time), mean over the runs that
    finished it, of the extension and of Conure, one row per machine."""
    numbers = numbers_of(dataset)
    lines = ["| run | machine | " + " | ".join(f"T{k}: parameters / minutes" for k in numbers)
             + " | all tasks |", "|---|---|" + "---|" * (len(numbers) + 1)]
    for label, directories in ((LABEL, extension_runs(dataset)), ("Conure", plan.runs_of(dataset, "conure"))):
        per_task = [[(r, d) for d in directories for r in collect([d], "conure", k)] for k in numbers]
        for where in dict.fromkeys(machine(r) for found in per_task for r, _ in found):
            cells, stored, minutes = [], 0, 0.0
            for k, found in zip(numbers, per_task):
                here = [(r, d) for r, d in found if machine(r) == where]
                seconds = [sum((load_json(archived(d) / f"{name}.timing.json") or {"wall_seconds": np.nan})
                               ["wall_seconds"] for name in (f"tp_t{k}", f"ret_t{k}")) for _, d in here]
                stored += here[0][0]["stored_parameters"] if here else 0
                minutes += np.mean(seconds) / 60 if here else np.nan
                cells.append(f"{here[0][0]['stored_parameters']:,} / {np.mean(seconds) / 60:.1f}" if here else "n/a")
            lines.append(f"| {label} | {where} | " + " | ".join(cells) + f" | {stored:,} / {minutes:.0f} |")
    return lines


def standing(dataset, number):
    """Task `number` of the extension against every method with the final models (verdicts.task_verdict)
    and against the better simple baseline (`place`): {"own": its results, "best": the best other method
    and its verdict, "ahead": the methods ahead beyond the spread, "unjudged": those not judged,
    "baseline": (place, the baseline's name, its score) or None}; None before two seeds of the extension."""
    numbers, fitted, metric = numbers_of(dataset), baselines(dataset), run_all.main_metric(number)
    mine = (extension_runs(dataset), "conure")
    own = collect(mine[0], "conure", number, numbers[-1])
    found = {label: (verdicts.task_verdict(dataset, mine, (folders, method), number, numbers[-1]),
                     collect(folders, method, number, numbers[-1]))
             for label, folders, method in compared_rows(dataset)}
    found = {label: pair for label, pair in found.items() if pair[0]}
    if len(own) < 2 or not found:
        return None
    best = max(found, key=lambda label: max(spread(g, metric)[0] for g in by_machine(found[label][1]).values()))
    bar = best_simple_baseline(fitted[number], metric) if fitted and number in fitted else None
    return {"own": own, "best": (best, found[best][0]),
            "ahead": [label for label, (v, _) in found.items() if v[0] == "worse"],
            "unjudged": [label for label, (v, _) in found.items() if v[0] not in JUDGED],
            "baseline": bar is not None and (place(own, bar[1], metric), *bar)}


def trails_table(dataset):
    """Per task, the extension against every method (final models; a gap counts beyond both spreads, on
    one kind of machine or widened by the machines' gap) and against the better simple baseline (beyond
    the spread plus the held-out users' standard error): the best other method, the verdict against it
    and the methods ahead of the extension; then a line on the tasks where it trails."""
    lines = ["| task | the extension | best other method | against it | methods ahead beyond the spread | "
             "against the better simple baseline |", "|---|---|---|---|---|---|"]
    found = {k: standing(dataset, k) for k in numbers_of(dataset)}
    found = {k: row for k, row in found.items() if row}
    for k, row in found.items():
        metric, (best, (verdict, difference, noise, where, gap, _)) = run_all.main_metric(k), row["best"]
        against_baseline = "n/a" if not row["baseline"] else "{} {} ({:.4f})".format(
            place_text(row["baseline"][0]), *row["baseline"][1:])
        lines.append(f"| T{k} {tasks.task(k).name} {metric} | {counted_cell(row['own'], [metric])} | {best} "
                     f"({where}) | {verdict.replace('tie', 'level')} ({difference:+.4f}, spread {noise:.4f}"
                     + ("" if gap is None else f" with the machines' gap {gap:.4f}") + f") | "
                     f"{', '.join(row['ahead']) or 'none'} | {against_baseline} |")
    if not found:
        return ["(fewer than two seeds yet)"]
    trailing = [f"T{k} ({', '.join(row['ahead'])})" for k, row in found.items() if row["ahead"]]
    below = [f"T{k}" for k, row in found.items() if row["baseline"] and row["baseline"][0] == "below"]
    unjudged = sorted({label for row in found.values() for label in row["unjudged"]})
    summary = (f"- Of {len(found)} tasks judged, the extension trails a method beyond the spread on {len(trailing)}"
               + (f": {'; '.join(trailing)}" if trailing else "")
               + f"; it is below the better simple baseline on {', '.join(below) or 'none'}"
               + (f"; not judged against {', '.join(unjudged)} (one seed, or two machines without a seed run on "
                  "both)" if unjudged else "") + ".")
    return lines + ["", summary]


def against_conure_lines(dataset):
    """The extension against Conure at the release's settings, task by task, with the final models: what
    the extension adds to the one model that forgets nothing."""
    line = verdicts.versus_line(dataset, f"{LABEL} vs Conure on every task", (extension_runs(dataset), "conure"),
                                (plan.runs_of(dataset, "conure"), "conure"), numbers_of(dataset))
    return [line] if line else []


def section(dataset):
    lines = [f"## Beyond the release: Conure with the extension ({dataset})", "",
             "Settings chosen one at a time on seed 0's validation slice (docs/extension.md): each step's candidates "
             "run from the same earlier stages, the item loss last; the held-out split was not looked at. The runs "
             f"at the settings chosen are seeds {', '.join(map(str, plan.EXTENSION_RUNS['seeds']))}, which did not "
             "choose.", ""]
    lines += selection_table(dataset)
    lines += ["", "At the settings chosen beside every method, each with its final model (mean ± std over seeds):",
              ""] + tables.quality_table(dataset, rows=[(LABEL, extension_runs(dataset), "conure")]
                                         + compared_rows(dataset), metrics=lambda k: [run_all.main_metric(k)])
    lines += ["", "Does it trail any method? Each task with each method's final model:", ""] + trails_table(dataset)
    lines += against_conure_lines(dataset)
    lines += ["", "What it costs beside Conure:", ""] + cost_table(dataset)
    return lines + [""] + zero_forgetting_line(extension_runs(dataset), "with the extension") + [""]
