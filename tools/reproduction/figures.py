"""The report's figures: the prune-ratio sweep and the learning curves over training users."""
import shutil

import run_all
import tasks
from tools.reproduction import plan
from tools.reproduction.plan import archived, share_dir, sweep_dir
from tools.reproduction.results import baseline_mean, baselines, collect, load_json, numbers_of, spread


def copy_figure(source, destination):
    if source.exists():
        destination.parent.mkdir(exist_ok=True)
        shutil.copy2(source, destination)
        return True
    return False


def save_figure(fig, path, dpi):
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def sweep_figure(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = {k: [] for k in (1, 2)}
    for ratio in plan.SWEEP["ratios"]:
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
    ax.set_title(f"Conure prune-ratio sweep, {plan.SWEEP['dataset']} ({plan.SWEEP['preset']} preset)")
    ax.legend()
    save_figure(fig, path, dpi=120)
    return points


def curves_figure(path, shares):
    """One panel per task: the main metric against the share of the training users, mean ± std over
    seeds, per method, beside the two simple baselines; False before any run finished."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numbers = numbers_of(plan.CURVES["dataset"])
    rows, columns = -(-len(numbers) // 3), min(len(numbers), 3)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.0 * rows), squeeze=False)
    drawn = False
    for ax, k in zip(axes.ravel(), numbers):
        metric = run_all.main_metric(k)
        for method in plan.CURVES["methods"]:
            seeds = plan.CURVES["seeds"]
            points = [(share, collect([share_dir(share, s) for s in seeds], method, k)) for share in shares]
            points = [(share, spread(found, metric)) for share, found in points if found]
            if points:
                drawn = True
                x, (mean, std, _) = [p[0] for p in points], zip(*[p[1] for p in points])
                ax.errorbar(x, mean, yerr=std, marker="o", capsize=3, label=plan.LABELS[method])
        fitted = [(share, [b for b in (baselines(plan.CURVES["dataset"], share_dir(share, s))
                               for s in plan.CURVES["seeds"])
                           if b and k in b]) for share in shares]
        for part, style, name in (("strong", "--", "strong simple baseline"),
                                  ("trivial", ":", "popularity / majority")):
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
