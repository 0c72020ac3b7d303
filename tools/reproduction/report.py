"""REPRODUCTION.md, assembled from the tables and figures of the archived results."""
from pathlib import Path

import methods
import run_all
from tools.reproduction import extension, plan, readme
from tools.reproduction.figures import copy_figure, curves_figure, sweep_figure
from wording import plural
from tools.reproduction.plan import (archive, archived, experiments, kcore_dir, method_runs, run_dir, seeds_of,
                                     share_dir, sweep_dir)
from tools.reproduction.results import (architecture_text, baselines, load_json, machine, t1_selection_text,
                                        wall_minutes, zero_forgetting_line)
from tools.reproduction.forgetting import forgetting_comparison, forgetting_table, gates_table
from tools.reproduction.tables import (baseline_row, claim_lines, epochs_table, heads_table, item_loss_table,
                                       item_loss_verdicts, paper_width_table, quality_table, selection_table,
                                       storage_table, varied_table, verdict_lines)


def report(args=None, destination=None):
    """Archive the results under plan.OUT, then write REPRODUCTION.md (and figures/) into `destination`
    from the archive, and the headline tables of the README there."""
    archive()
    destination = Path(destination or plan.ROOT)
    lines = header_lines() + ["## What has run", "",
                              "An experiment that has not finished every task is partial: the tables below show what "
                              "exists.", ""]
    lines += progress_lines() + [""]
    lines += [f"## The successors' learning rate ({plan.SELECT['dataset']}, T2, seed {plan.SELECT['seed']})", "",
              "The same choice Conure's preset made, between two values on T2's validation slice; the held-out "
              "split was not looked at. Each run starts from the same T1.", ""] + selection_table() + [""]
    for dataset in plan.DATASETS:
        lines += dataset_section(dataset, destination)
    if plan.HEADS["dataset"] in plan.DATASETS:
        lines += [f"## Classification losses ({plan.HEADS['dataset']}, Conure T4-T6)", "",
                  "Both from the same T1-T3 checkpoints, seeds as shown.", ""] + heads_table() + [""]
    if plan.ITEM_LOSS["dataset"] in plan.DATASETS:
        lines += [f"## Item-task losses ({plan.ITEM_LOSS['dataset']}, Conure T2-T3)", "",
                  "Conure's later item tasks with the release's BPR and with TERACON's full softmax, each seed's two "
                  "runs from the same T1.", ""]
        runs = [plan.item_loss_dir(loss, s) for loss in plan.ITEM_LOSS["losses"] for s in plan.ITEM_LOSS["seeds"]]
        lines += (item_loss_table() + [""] + item_loss_verdicts() + zero_forgetting_line(runs, "with either loss")
                  + [""])
    if plan.PAPER_WIDTH["dataset"] in plan.DATASETS:
        lines += [f"## The paper's width ({plan.PAPER_WIDTH['dataset']}, Conure)", ""] + paper_width_table() + [""]
    points = sweep_figure(destination / "figures" / "prune_sweep.png")
    lines += ["## Prune-ratio sweep", ""]
    if points:
        sweep = plan.SWEEP
        lines += [f"Conure on {sweep['dataset']} T1-T2, seed {sweep['seed']}, {sweep['preset']} preset, prune ratio "
                  "of every task as shown.", "",
                  "![prune sweep](figures/prune_sweep.png)", "", "| prune ratio | T1 HR@5 | T2 HR@5 |", "|---|---|---|"]
        t1, t2 = dict(points[1]), dict(points[2])
        lines += [f"| {r} | {t1.get(r, float('nan')):.4f} | {t2.get(r, float('nan')):.4f} |" for r in sweep["ratios"]]
        found = baselines(plan.SWEEP["dataset"], sweep_dir(plan.SWEEP["ratios"][0]))
        if found:  # the quick preset has no validation slice: fitted on all training users
            lines.append(baseline_row(found, [1, 2], lambda k: ["HR@5"], label="strong simple baseline, same split"))
    else:
        lines.append("(not run yet)")
    if plan.CURVES["dataset"] in plan.DATASETS:
        lines += ["", f"## How much data: {plan.CURVES['dataset']} over nested shares of the training users", ""]
        lines += curves_section(destination)
    if plan.KCORE["dataset"] in plan.DATASETS:
        lines += ["", f"## How much data: {plan.KCORE['dataset']} with a k-core filter of the items", ""]
        lines += kcore_section()
    for dataset in plan.DATASETS:
        lines += [""] + extension.section(dataset)
    (destination / "REPRODUCTION.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {destination / 'REPRODUCTION.md'}")
    if (destination / "README.md").exists():
        readme.update(destination / "README.md")
        print(f"updated the headline tables of {destination / 'README.md'}")


def header_lines():
    """The report's title and what holds for every table: protocol, selection budget, spread, machine."""
    select = ", ".join(f"{plan.LABELS[m]} {' or '.join(f'{r:g}' for r in rates)}"
                       for m, rates in plan.SELECT["rates"].items())
    return ["# Reproduction report", "",
            "Generated by `python tools/reproduce.py report` from the results files of "
            "`python tools/reproduce.py run`, kept in `results/`; do not edit by hand.", "",
            "Every method shares the data pipeline, the split (80/20, seed 10), the backbone and the metrics. All "
            "runs use run_all.py's converged preset: each stage keeps its best epoch on a validation slice (10% of "
            "its training split; the held-out 20% is never used to choose) and stops after 3 evaluations without "
            "improvement (for T1, as each data set's section says; TERACON's later tasks after 5, under a cap of 100 "
            "epochs, as its release), under an epoch cap. The backbone of each data set is named in its section; it "
            "is narrower and shallower than the paper's 256 channels and 8 blocks, so that runs fit on 2 CPU cores, "
            "and one run at the paper's width is below. A cell is the mean ± standard deviation over the seeds that "
            "finished (n); the held-out split is the whole 20%.", "",
            "**How a verdict is read.** A continual learner is one model: every verdict scores each method with its "
            "model after the last task (Conure's answers are bit-identical at its own stage; the tables at each "
            "task's own stage follow, and a verdict that reads otherwise there says so). A difference counts only "
            "when it exceeds the two methods' standard deviations together. Both sides come from one kind of "
            "machine where they can: where they cannot, the verdict names both kinds and widens the spread by the "
            "largest gap between a seed's run on one kind and the same run repeated on the other.", "",
            "**Selection budget, the same for every method.** The preset's settings were chosen on the validation "
            "slice with Conure's T1 and T2 stages; among them the later tasks' learning rate, between 1e-3 and 3e-4 "
            "on ML-1M's T2 (seed 0). HAT and TERACON had exactly that: two values of their later tasks' learning "
            f"rate each on ML-1M's T2 validation slice, seed 0 ({select}; TERACON's T3 on at a tenth of T2's, as its "
            "release), in the table below. Nothing else was searched: the baselines share the preset's settings, "
            "HAT and TERACON otherwise train as their released code does (docs/hat.md, docs/teracon.md); HAT with its "
            "release's SGD takes its release's constants, nothing chosen. On the TTL sample every method runs at the "
            "preset's or its released settings. The extension's settings were chosen on seed 0's validation slice; "
            "its reported runs are seeds 1-3.", "",
            "\\* *Shared protocol*: HAT and TERACON as they ran before they trained as their released code does "
            "(the preset's Adam for HAT's gates; TERACON at batch 128 and the preset's learning rate, with BPR heads "
            "without a bias, the current batch's relation ratio and conv1's gate before its LayerNorm). Made by "
            f"`git checkout {plan.SHARED_PROTOCOL['commit']} && python tools/reproduce.py run --methods=hat,teracon`; "
            "their share of parameters changed counts every conv weight, as that code did.", "",
            "Machines, and the runs each one ran (each experiment's is in the table below):", "",
            *machine_lines(), ""]


def dataset_section(dataset, destination):
    spec = plan.DATASETS[dataset]
    directories = sorted({d for m in plan.METHODS for d in method_runs(dataset, m)})
    seeds = {plan.LABELS[m]: seeds_of(dataset, m) for m in plan.METHODS}
    lines = [f"## {dataset}", "",
             f"Data: {dataset} (`{spec['data_dir']}`), tasks {spec['tasks']}. Seeds: "
             + ", ".join(f"{label} {s}" for label, s in seeds.items())
             + f". Backbone: {architecture_text(dataset)}.{t1_selection_text(dataset)} Wall time of all its "
             f"stages: {wall_minutes(directories):.0f} min on the machines named above.", "",
             "### Quality per task with each method's final model (mean ± std over seeds)", "",
             "Every task scored with the method's model after its last task, as continual learning reads a learner: "
             "Conure's, SinMoAll's, HAT's and TERACON's one model after the last stage; SinMo, FineAll, FineSmax and "
             "PeterRec keep a model per task. One row per method and kind of machine.", ""]
    lines += quality_table(dataset)
    lines += ["", "### Quality per task at each task's own stage (mean ± std over seeds)", "",
              "The model right after the task was learned: what a method could answer had it stopped there. Conure's "
              "rows equal the final ones bit for bit.", ""] + quality_table(dataset, final=False)
    lines += ["", "### The paper's claims on this data", ""]
    lines += claim_lines(dataset) or ["(no finished runs to judge yet)"]
    lines += ["", "### Epochs trained and kept", ""] + epochs_table(dataset)
    figure = f"figures/curves_{dataset}.png"
    if copy_figure(archived(run_dir(dataset, 0)) / "curves.png", destination / figure):
        lines += ["", "Learning curves of Conure, seed 0 (training loss, validation metric, the epoch kept):", "",
                  f"![learning curves]({figure})"]
    lines += ["", "### Parameters stored per task", ""] + storage_table(dataset)
    lines += ["", "### Forgetting (mean ± std over seeds)", "",
              "With R[l, j] task j's main metric after stage l and T the last stage: BWT = mean over the earlier "
              "tasks j of R[T, j] - R[j, j] (Lopez-Paz and Ranzato, 2017), and the forgetting f_j = max over l in "
              "j..T-1 of R[l, j] - R[T, j], the best the task scored before the last stage (its own included) minus "
              "its score after it, and its mean over the earlier tasks (Chaudhry et al., 2018); both per kind of "
              "metric, HR@5 and accuracy apart. Per earlier task: f_j / its largest drop, max over l > j of R[j, j] "
              "- R[l, j] (negative: never below its own; it can differ in sign from f_j); then the share of the "
              "parameters it reads that changed by the last stage, where a conv weight counts when the channels it "
              "reads and writes are both open for the task (HAT's and TERACON's gates at smax; Conure's owner maps; "
              "every weight for SinMoAll).", ""] + forgetting_comparison(dataset)
    for method in (m for m in plan.METHODS if methods.rule_of(m).gates):
        lines += ["", f"### {plan.LABELS[method]}'s gates", ""] + gates_table(dataset, method)
    for method in (m for m in run_all.ONE_MODEL if m in plan.METHODS):
        lines += ["", f"### {plan.LABELS[method]}: each task after every later stage (seed 0)", ""]
        lines += forgetting_table(run_dir(dataset, 0), method)
    return lines + [""]


def curves_section(destination):
    shares = plan.CURVES["shares"] + [1]
    lines = ["Every point trains on a nested random share of the training users (`--train_share`); the held-out "
             "and validation users are the same at every share, so every point is scored on the same people. Share "
             "1 is the main runs. The subsets are one fixed random draw, the same for every seed, so the spread is "
             "that of "
             "training; the simple baselines are fitted on the same subsets and do not depend on the seed.", ""]
    lines += varied_table(plan.CURVES, shares, share_dir, "share")
    lines += verdict_lines(plan.CURVES, shares, share_dir, "share")
    if curves_figure(destination / "figures" / "learning_curves.png", shares):
        lines += ["", "![learning curves](figures/learning_curves.png)"]
    return lines


def kcore_section():
    return ["Items seen fewer than k times in the training users become `<unk>`, then training users left with "
            "fewer than k items are dropped, until nothing changes (`--min_item_count`); every held-out user is "
            "still scored, its dropped items as `<unk>`, and a held-out target that was dropped counts as a miss "
            "for every method and baseline. k = 0 is the main runs.", ""] + varied_table(
        plan.KCORE, [0] + plan.KCORE["ks"], kcore_dir, "k") + verdict_lines(plan.KCORE, [0] + plan.KCORE["ks"],
                                                                            kcore_dir, "k")


def experiment_runs():
    """(label, method, run folder, its tasks) of every experiment of the plan."""
    for label, argv, _ in experiments():
        options = dict(arg[2:].partition("=")[::2] for arg in argv)  # a bare flag (--extension) maps to ""
        yield label, options["method"], Path(options["out_dir"]), run_all.parse_tasks(options["tasks"])


def progress_lines():
    """Which experiments have finished which tasks, and on which machine: the report covers only these."""
    lines = ["| experiment | tasks finished | machine |", "|---|---|---|"]
    for label, method, directory, numbers in experiment_runs():
        found = {k: load_json(archived(directory) / f"{methods.own_stage(method, k)}.json") for k in numbers}
        done = [k for k, result in found.items() if result]
        where = ", ".join(dict.fromkeys(machine(result) for result in found.values() if result))
        lines.append(f"| {label} | {len(done)} of {len(numbers)}"
                     + (f" (T{', T'.join(map(str, done))})" if 0 < len(done) < len(numbers) else "") + f" | {where} |")
    return lines


def machine_lines():
    """A line per kind of machine the runs' T1 stages ran on: its device and libraries, and the methods
    (and repeats) it ran."""
    machines = {}
    for dataset in plan.DATASETS:
        rows = plan.method_rows(dataset) + [(extension.LABEL, extension.extension_runs(dataset), "conure")]
        for label, folders, method in rows:
            for directory in folders:
                result = load_json(archived(directory) / f"{methods.own_stage(method, 1)}.json")
                if result and result.get("eval_settings"):
                    settings = result["eval_settings"]
                    threads = settings.get("intra_op_threads") or settings.get("cpu_threads")
                    described = (f"{settings['device']}, {settings['backend']}, Keras {settings['keras']}, "
                                 f"{plural(threads, 'intra-op thread')}")
                    repeat = " repeated" if plan.is_rerun(directory) else ""
                    machines.setdefault(described, []).append(f"{label}{repeat}")
    return [f"- {described}: {'; '.join(dict.fromkeys(labels))}." for described, labels in machines.items()] or [
        "- none yet."]
