"""The report's section on Conure beyond the release (docs/extension.md): the choice of each setting
on the validation slice, then the runs at the settings chosen beside Conure, FineAll, TERACON and the
simple baselines, with verdicts, storage, wall time and the proof of zero forgetting."""
import numpy as np

import presets
import run_all
import tasks
from tools.reproduction import plan
from tools.reproduction.plan import archived, extension_dir, method_runs
from tools.reproduction.results import (baselines, collect, compare, counted_cell, load_json, numbers_of, place,
                                        zero_forgetting_line)

COMPARED = ("conure", "finall", "teracon")  # the rows beside the extension's


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
    return [k for k in numbers if any(presets.reaches(key, phase, k) for phase in ("tp", "ret"))]


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
                         + f" | {'' if mean is None else f'{mean:.4f}'} | {'yes' if choices.get(key) == value else ''} |")
    return lines if len(lines) > 2 else ["(not run yet)"]


def method_minutes(directories, method, numbers):
    """The mean over the runs that finished every task of the wall time of `method`'s stages."""
    names = run_all.stage_names(method, numbers)
    totals = [sum(t["wall_seconds"] for t in timings) / 60 for timings in (
        [load_json(archived(d) / f"{name}.timing.json") for name in names] for d in directories) if all(timings)]
    return f"{np.mean(totals):.0f}" if totals else "n/a"


def extension_runs(dataset):
    return [extension_dir(dataset, seed) for seed in plan.EXTENSION_RUNS["seeds"]]


def quality_table(dataset):
    """The extension beside Conure, FineAll and TERACON (as released, and under the shared protocol; mean ±
    std over seeds), the simple baselines, stored parameters per task and wall time."""
    numbers = numbers_of(dataset)
    rows = [("Conure with the extension", extension_runs(dataset), "conure")]
    rows += [(plan.LABELS[m], method_runs(dataset, m), m) for m in COMPARED if m in plan.METHODS]
    rows += plan.shared_protocol_rows(dataset, ["teracon"])
    lines = ["| method | " + " | ".join(f"T{k} {run_all.main_metric(k)}" for k in numbers)
             + " | stored parameters | minutes, all stages |", "|---|" + "---|" * (len(numbers) + 2)]
    for label, directories, method in rows:
        found = [collect(directories, method, k) for k in numbers]
        stored = [r[0]["stored_parameters"] if r else None for r in found]
        lines.append(f"| {label} | " + " | ".join(counted_cell(r, [run_all.main_metric(k)])
                                                  for r, k in zip(found, numbers))
                     + f" | {'n/a' if None in stored else f'{sum(stored):,}'} | "
                       f"{method_minutes(directories, method, numbers)} |")
    fitted = baselines(dataset)
    for part, name in (("trivial", "popularity / majority"), ("strong", "strong simple baseline")):
        if fitted:
            lines.append(f"| {name} | " + " | ".join(f"{fitted[k][part][run_all.main_metric(k)]:.4f}"
                                                      if k in fitted else "n/a" for k in numbers) + " | | |")
    return lines


def verdict_table(dataset):
    """Per task, the extension against Conure and FineAll (a gap counts beyond both methods' spreads)
    and against the strong simple baseline (beyond the spread plus the held-out users' standard error)."""
    numbers, mine = numbers_of(dataset), extension_runs(dataset)
    fitted = baselines(dataset)
    lines = ["| task | vs Conure | vs FineAll | vs strong simple baseline |", "|---|---|---|---|"]
    for k in numbers:
        own, metric = collect(mine, "conure", k), run_all.main_metric(k)
        if len(own) < 2:
            continue
        cells = [compare(own, collect(method_runs(dataset, m), m, k), metric)[0] for m in ("conure", "finall")]
        cells.append(place(own, fitted[k]["strong"][metric], metric) if fitted and k in fitted else "n/a")
        lines.append(f"| T{k} {tasks.task(k).name} | " + " | ".join(cells) + " |")
    return lines if len(lines) > 2 else ["(fewer than two seeds yet)"]


def section(dataset):
    lines = [f"## Beyond the release: Conure with the extension ({dataset})", "",
             "Settings chosen one at a time on seed 0's validation slice (docs/extension.md): each step's candidates "
             "run from the same earlier stages; the held-out split was not looked at.", ""]
    lines += selection_table(dataset)
    lines += ["", "At the settings chosen (mean ± std over seeds):", ""] + quality_table(dataset)
    lines += ["", "Verdicts:", ""] + verdict_table(dataset)
    return lines + [""] + zero_forgetting_line(extension_runs(dataset), "with the extension") + [""]
