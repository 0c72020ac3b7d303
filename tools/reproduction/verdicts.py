"""The report's verdicts: one method against another task by task, read as continual learning reads a
learner (each method's model after the last task), on one kind of machine or, where the two sides ran
on different kinds, with the spread widened by the gap measured on a seed run on both."""
import run_all
from tools.reproduction import plan
from tools.reproduction.plan import rerun_dir, run_dir, runs_of
from tools.reproduction.results import JUDGED, collect, judge, machine_gap, numbers_of


def rerun_gap(dataset, number, metric, last=None):
    """The largest gap in `metric` on task `number` between a main run and its repeat on another
    machine (plan.RERUN), over its methods and seeds; None where nothing was repeated."""
    spec = plan.RERUN.get(dataset, {"methods": [], "seeds": []})
    pairs = []
    for method in spec["methods"]:
        for seed in spec["seeds"]:
            first, again = (collect([folder], method, number, last) for folder in (run_dir(dataset, seed),
                                                                                   rerun_dir(dataset, seed)))
            pairs += [(first[0], again[0])] if first and again else []
    return machine_gap(pairs, metric)


def task_verdict(dataset, mine, theirs, number, last):
    """(verdict, difference, noise, where, machines' gap, the verdict at the task's own stage) of one
    side's runs against the other's on task `number` with the final models (results.judge). `mine` and
    `theirs`: (folders, method)."""
    metric = run_all.main_metric(number)
    found = {}
    for reading in (last, None):
        ours, others = (collect(folders, method, number, reading) for folders, method in (mine, theirs))
        if ours and others:
            found[reading] = judge(ours, others, metric, rerun_gap(dataset, number, metric, reading))
    if last not in found:
        return None
    return (*found[last], found[None][0] if None in found else None)


def verdict_text(number, verdict, difference, noise, where, gap, own, common):
    """'T2 +0.0146 (spread 0.0064)', with the machines where not `common`, the machines' gap in the
    spread, and the own-stage verdict where it differs."""
    notes = ([] if where == common else [where]) + ([f"with the machines' gap {gap:.4f}"] if gap is not None else [])
    if own and own != verdict:
        notes.append(f"at its own stage: {own.replace('tie', 'within the spread')}")
    if verdict not in JUDGED:
        return f"T{number} {difference:+.4f} ({'; '.join([verdict] + notes)})"
    return f"T{number} {difference:+.4f} (spread {noise:.4f}{''.join('; ' + n for n in notes)})"


def common_machines(verdicts):
    """The machines most of the task verdicts [(task, task_verdict(...)), ...] compare runs of."""
    places = [found[3] for _, found in verdicts]
    return max(dict.fromkeys(places), key=places.count)


def versus_line(dataset, label, mine, theirs, numbers):
    """'- <label>: better on a, within the spread on b, worse on c (T1 ..., T2 ...).' over `numbers`,
    with the final models; None before both sides have results."""
    last = numbers_of(dataset)[-1]
    verdicts = [(k, found) for k in numbers if (found := task_verdict(dataset, mine, theirs, k, last))]
    if not verdicts:
        return None
    common = common_machines(verdicts)
    tally = {v: sum(1 for _, found in verdicts if found[0] == v) for v in JUDGED}
    unjudged = len(verdicts) - sum(tally.values())
    return (f"- {label} (final models; on {common} unless a task says otherwise): better on {tally['better']}, "
            f"within the spread on {tally['tie']}, worse on {tally['worse']}"
            + (f", not judged on {unjudged} (one seed on a side, or two machines without a seed run on both)"
               if unjudged else "")
            + " (" + ", ".join(verdict_text(k, *found, common) for k, found in verdicts) + ").")


def conure_lines(dataset):
    """Conure against every other method on every task, with the final models."""
    numbers, lines = numbers_of(dataset), []
    mine = (runs_of(dataset, "conure"), "conure")
    for label, folders, method in plan.method_rows(dataset, shared_protocol=False):
        if method != "conure":
            line = versus_line(dataset, f"Conure vs {label} on every task", mine, (folders, method), numbers)
            lines += [line] if line else []
    return lines


def teracon_claim_lines(dataset):
    """TERACON's claim, that it beats Conure on the later tasks, judged with the final models."""
    numbers = numbers_of(dataset)
    last, later = numbers[-1], numbers[1:]
    mine, theirs = (runs_of(dataset, "teracon"), "teracon"), (runs_of(dataset, "conure"), "conure")
    verdicts = [(k, found) for k in later if (found := task_verdict(dataset, mine, theirs, k, last))]
    if not verdicts:
        return []
    better = [f"T{k}" for k, found in verdicts if found[0] == "better"]
    judged = [k for k, found in verdicts if found[0] in JUDGED]
    holds = ("is not judged yet" if not judged else "holds here" if len(better) == len(judged)
             else "holds on part of them here" if better else "does not hold here")
    common = common_machines(verdicts)
    return [f"- **TERACON's claim** (better than Conure on the later tasks) {holds}, with the final models: better "
            f"beyond the spread on {', '.join(better) or 'no task'} of {len(judged)} judged (on {common} unless a "
            f"task says otherwise; " + ", ".join(verdict_text(k, *found, common) for k, found in verdicts) + ")."]


def hat_optimizer_lines(dataset):
    """Whether HAT's gap to Conure is its optimizer's: HAT with its release's SGD against HAT on the
    preset's Adam, with the final models (against Conure: conure_lines, as every method)."""
    if dataset != plan.HAT_SGD["dataset"]:
        return []
    sgd = ([plan.hat_sgd_dir(s) for s in plan.HAT_SGD["seeds"]], "hat")
    line = versus_line(dataset, f"{plan.HAT_SGD['label']} vs HAT on the preset's Adam", sgd,
                       (runs_of(dataset, "hat"), "hat"), numbers_of(dataset))
    return [line] if line else []
