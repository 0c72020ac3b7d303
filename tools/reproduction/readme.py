"""README.md's headline tables: made from the archived results as REPRODUCTION.md is (each method's final
model, one row per method and kind of machine), and written into README.md between markers by `report`."""
import re

import run_all
from tools.reproduction import plan, tables
from tools.reproduction.extension import extension_runs
from tools.reproduction.results import baselines, cell, collect, numbers_of

START = "<!-- headline table {dataset}: made by `python tools/reproduce.py report` from results/, do not edit -->"
END = "<!-- end of headline table {dataset} -->"


def headline_rows(dataset):
    """(label, run folders, method) of the headline table: every method (not the shared-protocol runs),
    then Conure with the extension."""
    rows = plan.method_rows(dataset, shared_protocol=False)
    return rows + [("Conure with `--extension`", extension_runs(dataset), "conure")]


def stored_parameters(directories, method, numbers):
    """The parameters a method stores for every task (its first run's, at each task's own stage)."""
    found = [collect(directories, method, k) for k in numbers]
    return f"{sum(r[0]['stored_parameters'] for r in found):,}" if all(found) else "n/a"


def headline_table(dataset):
    """Each task's main metric (HR@5 for item tasks, accuracy for classification) with every method's
    final model, mean ± std over seeds, beside the simple baselines."""
    numbers = numbers_of(dataset)
    lines = ["| method | machine | n | " + " | ".join(f"T{k}" for k in numbers) + " | stored parameters |",
             "|---|---|---|" + "---|" * (len(numbers) + 1)]
    for label, directories, method in headline_rows(dataset):
        per_task = [collect(directories, method, k, numbers[-1]) for k in numbers]
        for where, found in tables.machine_groups(per_task).items():
            lines.append(f"| {label} | {where} | {max(map(len, found))} | " + " | ".join(
                cell(r, run_all.main_metric(k)) if r else "n/a" for r, k in zip(found, numbers))
                + f" | {stored_parameters(directories, method, numbers)} |")
    fitted = baselines(dataset)
    for part, label in (("trivial", "popularity / majority"),
                        ("strong", "Markov chain / co-occurrence / logistic regression")):
        if fitted:
            cells = [f"{fitted[k][part][run_all.main_metric(k)]:.4f}" for k in numbers]
            lines.append(f"| {label} | | | " + " | ".join(cells) + " | |")
    return lines


def blocks(text):
    """{dataset: (start, end)} character spans of README's generated tables, between their markers."""
    found = {}
    for dataset in plan.DATASETS:
        start, end = START.format(dataset=dataset), END.format(dataset=dataset)
        match = re.search(re.escape(start) + r"\n(.*?)" + re.escape(end), text, re.S)
        if match:
            found[dataset] = match.span(1)
    return found


def update(path):
    """Rewrite the generated tables of the README at `path` from the archived results."""
    text = path.read_text()
    for dataset, (start, end) in sorted(blocks(text).items(), key=lambda item: -item[1][0]):
        text = text[:start] + "\n".join(headline_table(dataset)) + "\n" + text[end:]
    path.write_text(text)
