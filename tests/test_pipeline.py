"""Later tasks: chaining, zero forgetting proven bit for bit, its absence without ownership, run_all."""
import json
import shutil

import pytest

import checkpoint
import evaluate
import methods
from data_prep import synthetic_data
import presets
import run_all
from tools.reproduction.report import report
from conftest import run_stage


def test_earlier_tasks_score_bit_identically_after_two_later_tasks(conure_chain, synthetic_dir):
    out, results = conure_chain
    for task, own in ((1, "ret_t1"), (2, "ret_t2")):
        later = evaluate.evaluate_task(task, "ret_t3", synthetic_dir, out)
        assert later["eval_settings"] == results[own]["eval_settings"]  # like with like
        assert later["scores_sha256"] == results[own]["scores_sha256"]


def test_plain_fine_tuning_changes_earlier_task_scores(synthetic_dir, tmp_path):
    # SinMoAll: the same tasks in turn with every weight trainable and no ownership
    own = {1: run_stage("sinmo_t1", synthetic_dir, tmp_path, "--channels=16", "--dilations=[1,2]"),
           2: run_stage("sinmoall_t2", synthetic_dir, tmp_path)}
    run_stage("sinmoall_t3", synthetic_dir, tmp_path)
    for task in (1, 2):
        later = evaluate.evaluate_task(task, "sinmoall_t3", synthetic_dir, tmp_path)
        assert later["scores_sha256"] != own[task]["scores_sha256"]
        assert not evaluate.prove_task(task, "sinmoall_t3", tmp_path).holds


def test_ownership_accumulates_the_release_shares(conure_chain):
    import pruning

    owners, ratios = pruning.load(conure_chain[0] / "Models" / "ret_t3")
    assert ratios == [0.7, 0.7, 0.7]
    for owner in owners.values():
        for task in (1, 2, 3):
            assert (owner == task).sum() == pruning.keep_count(ratios, task, owner.size)


def test_stage_on_other_data_than_its_checkpoint_is_refused(conure_chain, tmp_path):
    other = tmp_path / "other"
    synthetic_data.write_synthetic(other, users=240, items=60, seed=1)
    with pytest.raises(checkpoint.CheckpointError, match="another T1 file: run conure_tp_t1.py first"):
        run_stage("tp_t4", other, conure_chain[0])


def test_unknown_source_tokens_are_counted(t1_run, synthetic_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synthetic_dir, data)
    clicks = data / "original_desen_finetune_click_nouserID.csv"
    lines = clicks.read_text().splitlines()
    lines[0] = "never-seen," + lines[0].split(",", 1)[1]
    clicks.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    shutil.copytree(t1_run[0], out)
    assert run_stage("tp_t2", data, out)["unknown_source_tokens"] == 1


def test_run_all_writes_the_summary_with_bit_identical_rows(synthetic_dir, tmp_path):
    run_all.main([f"--data_dir={synthetic_dir}", f"--out_dir={tmp_path}", "--tasks=1-2", "--verbose=0"])
    results = tmp_path / "Results"
    summary = (results / "summary.md").read_text()
    t1_row = next(line for line in summary.splitlines() if line.startswith("| T1 next_item |"))
    assert t1_row.count(" own ") == 1 and "scores bit-identical; every parameter it reads bit-identical" in t1_row
    assert len({cell.split("`")[1] for cell in t1_row.split("|")[2:5]}) == 1  # one score hash in every cell
    assert (results / "forgetting.png").stat().st_size > 1000
    forgetting = summary.split("## Forgetting")[1].split("##")[0]
    t1_row = next(line for line in forgetting.splitlines() if line.startswith("| T1 next_item |"))
    assert "| +0.0000 | 0.0% (0 of " in t1_row  # Conure: nothing lost, nothing it reads changed
    rows = (results / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("method,task,task_name,stage") and len(rows) == 1 + 3 + 1  # T1 x 3 stages, T2 x 1
    assert json.loads((results / "ret_t2.json").read_text())["stage"] == "ret_t2"


def test_run_all_rejects_a_task_range_with_gaps():
    with pytest.raises(SystemExit):
        run_all.main(["--tasks=1,3"])


def test_run_all_again_reuses_finished_stages(synthetic_dir, tmp_path):
    argv = [f"--data_dir={synthetic_dir}", f"--out_dir={tmp_path}", "--tasks=1-2", "--verbose=0"]
    run_all.main(argv)
    weights = tmp_path / "Models" / "ret_t2" / "weights.npz"
    written = weights.stat().st_mtime_ns
    run_all.main(argv)
    assert weights.stat().st_mtime_ns == written
    # finished stages copied into another folder are reused there too (paths are not part of a run)
    other = tmp_path / "other"
    for name in ("tp_t1", "ret_t1"):
        shutil.copytree(tmp_path / "Models" / name, other / "Models" / name)
        for suffix in (".json", ".timing.json"):
            (other / "Results").mkdir(parents=True, exist_ok=True)
            shutil.copy2(tmp_path / "Results" / f"{name}{suffix}", other / "Results" / f"{name}{suffix}")
    copied = (other / "Models" / "ret_t1" / "weights.npz").stat().st_mtime_ns
    run_all.main([f"--data_dir={synthetic_dir}", f"--out_dir={other}", "--tasks=1-2", "--verbose=0"])
    assert (other / "Models" / "ret_t1" / "weights.npz").stat().st_mtime_ns == copied
    assert (other / "Models" / "ret_t2" / "weights.npz").read_bytes() == weights.read_bytes()
    run_all.main(argv[:-1] + ["--seed=1"])  # other settings: trained again
    assert weights.stat().st_mtime_ns != written


def tiny_reproduction(monkeypatch, tmp_path, synthetic_dir, tasks_text, methods):
    """The reproduction's plan pointed at the tiny synthetic data, its runs and archive under tmp_path."""
    from tools.reproduction import plan

    monkeypatch.setattr(plan, "OUT", tmp_path / "repro")
    monkeypatch.setattr(plan, "ARCHIVE", tmp_path / "results")
    monkeypatch.setattr(plan, "DATASETS", {"tiny": {"data_dir": str(synthetic_dir), "tasks": tasks_text,
                                                    "seeds": {}, "other_seeds": [0]}})
    monkeypatch.setattr(plan, "METHODS", methods)
    return plan


def test_reproduction_report_shows_conure_unchanged_and_sinmoall_changed(synthetic_dir, tmp_path, monkeypatch):
    tiny_reproduction(monkeypatch, tmp_path, synthetic_dir, "1-2", ("conure", "sinmoall"))
    for method in ("conure", "sinmoall"):
        run_all.main([f"--data_dir={synthetic_dir}", f"--out_dir={tmp_path / 'repro' / 'tiny' / 'seed0'}",
                      "--tasks=1-2", f"--method={method}", "--verbose=0"])
    report(destination=tmp_path)
    text = (tmp_path / "REPRODUCTION.md").read_text()
    conure, sinmoall = text.split("### SinMoAll: each task after every later stage")
    t1_row = [line for line in conure.splitlines() if line.startswith("| T1 next_item (HR@5) |")]
    assert t1_row and "unchanged: scores bit-identical; every parameter it reads bit-identical" in t1_row[-1]
    t1_row = [line for line in sinmoall.splitlines() if line.startswith("| T1 next_item (HR@5) |")][0]
    assert "unchanged" not in t1_row
    assert "**Zero forgetting holds** for Conure" in text and "**SinMoAll forgets**" in text
    forgetting = text.split("### Forgetting")[1].split("###")[0]
    conure_row = next(line for line in forgetting.splitlines() if line.startswith("| Conure |"))
    # BWT and forgetting on HR@5 (no classification task here), then T1: forgetting / largest drop; changed
    assert conure_row.endswith("| 0.0000 | n/a | 0.0000 | n/a | 0.0000 / 0.0000; 0.0% (n=1) |")
    assert "; 0.0%" not in next(line for line in forgetting.splitlines() if line.startswith("| SinMoAll |"))
    assert "| tiny conure seed 0 | 2 of 2 | " in text and "| tiny sinmoall seed 0 | 2 of 2 | " in text
    assert "T1 selection: patience 0, on each validation user's last item." in text  # the stages' own settings
    # the claims match the quality table: T2's HR@5 difference between Conure and SinMoAll
    quality = text.split("### Quality per task")[1].split("###")[0]
    hr = {row.split("|")[1].strip(): float(row.split("|")[4].split("/")[1])  # method, machine, T1, T2
          for row in quality.splitlines() if row.startswith(("| Conure |", "| SinMoAll |"))}
    claim = next(line for line in text.splitlines() if line.startswith("- Conure vs SinMoAll"))
    assert f"T2 {hr['Conure'] - hr['SinMoAll']:+.4f}" in claim


def test_reproduction_report_regenerates_from_the_archive_alone(synthetic_dir, tmp_path, monkeypatch):
    tiny_reproduction(monkeypatch, tmp_path, synthetic_dir, "1", ("conure",))
    run_all.main([f"--data_dir={synthetic_dir}", f"--out_dir={tmp_path / 'repro' / 'tiny' / 'seed0'}", "--tasks=1",
                  "--verbose=0"])
    report(destination=tmp_path)
    first = (tmp_path / "REPRODUCTION.md").read_text()
    assert not list((tmp_path / "results").rglob("*.npz"))  # results only, no weights
    shutil.rmtree(tmp_path / "repro")  # checkpoints and run folders gone, as in a fresh clone
    report(destination=tmp_path)
    assert (tmp_path / "REPRODUCTION.md").read_text() == first
    assert "| tiny conure seed 0 | 1 of 1 | " in first


def test_a_partial_reproduction_runs_only_the_chosen_experiments():
    from tools.reproduction import plan

    chosen = list(plan.experiments(["ml-1m"], ["conure"], [1], "1", ["main"]))
    assert [label for label, _, _ in chosen] == ["ml-1m conure seed 1"]
    assert "--tasks=1" in chosen[0][1] and "--out_dir=Data/Repro/ml-1m/seed1" in chosen[0][1]
    assert all("sinmoall" not in label for label, _, _ in plan.experiments(methods=["conure"]))


def test_the_item_loss_runs_pair_each_seeds_losses_on_one_t1(tmp_path, monkeypatch):
    from tools.reproduction import plan

    monkeypatch.setattr(plan, "OUT", tmp_path)
    chosen = list(plan.experiments(["ml-1m"], ["conure"], [1], None, ["item_loss"]))
    assert [label for label, _, _ in chosen] == ["ml-1m Conure, softmax for the later item tasks, seed 1",
                                                 "ml-1m Conure, bpr for the later item tasks, seed 1"]
    (softmax_args, no_start), (bpr_args, start) = [(argv, prepare) for _, argv, prepare in chosen]
    assert "--item_loss=softmax" in softmax_args and "--item_loss=bpr" in bpr_args and "--tasks=1-3" in bpr_args
    assert no_start is None
    for name in ("tp_t1", "ret_t1", "tp_t2"):
        (plan.item_loss_dir("softmax", 1) / "Models" / name).mkdir(parents=True)
    start()
    assert sorted(p.name for p in (plan.item_loss_dir("bpr", 1) / "Models").iterdir()) == ["ret_t1", "tp_t1"]


def test_the_item_loss_verdicts_count_a_gap_only_beyond_the_spread(tmp_path, monkeypatch):
    from tools.reproduction import plan, tables

    monkeypatch.setattr(plan, "OUT", tmp_path / "repro")
    monkeypatch.setattr(plan, "ARCHIVE", tmp_path / "results")
    hr5 = {"softmax": [0.070, 0.071, 0.069], "bpr": [0.058, 0.059, 0.057], "teracon": [0.069, 0.072, 0.068]}
    for name, scores in hr5.items():
        for seed, score in zip(plan.ITEM_LOSS["seeds"], scores):
            run = plan.run_dir("ml-1m", seed) if name == "teracon" else plan.item_loss_dir(name, seed)
            for k in (2, 3):  # TERACON read with its model after T6, Conure's runs of T1-T3 with their own
                path = plan.archived(run) / (f"eval_t{k}_teracon_t6.json" if name == "teracon" else
                                             f"{methods.own_stage('conure', k)}.json")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"HR@5": score, "MRR@5": score / 2}))
    against_bpr, against_teracon = tables.item_loss_verdicts()
    assert against_bpr.startswith("- Conure with the full softmax against Conure with BPR")
    assert "T2 +0.0120 vs spread 0.0020: better" in against_bpr and "T3 +0.0120" in against_bpr
    assert "T2 +0.0003 vs spread " in against_teracon and against_teracon.count(": level") == 2


def test_the_progress_table_reads_a_run_given_a_bare_flag(tmp_path, monkeypatch):
    from tools.reproduction import plan, report as reporting

    monkeypatch.setattr(plan, "ARCHIVE", tmp_path)
    argv = ["--method=conure", f"--out_dir={plan.OUT / 'tiny' / 'run'}", "--tasks=1-2", "--extension"]
    monkeypatch.setattr(reporting, "experiments", lambda: [("tiny run", argv, None)])
    assert reporting.progress_lines()[-1] == "| tiny run | 0 of 2 |  |"


def test_an_extension_trial_keeps_the_later_steps_at_their_defaults_whatever_was_chosen_since(monkeypatch):
    from tools.reproduction import plan

    chosen = {"embedding": "delta", "pooling": "attention"}
    monkeypatch.setattr(plan, "extension_choices", lambda dataset: chosen)
    runs = {label: argv for label, argv, _ in plan.experiments(["ttl-sample"], ["conure"], [0], None, ["extension"])}
    trial = runs["ttl-sample Conure with the extension, embedding=owned, seed 0"]
    assert "--extension=embedding=owned,pooling=last,task_dropout=0.0,shared_lr_scale=1.0,item_loss=bpr" in trial
    trial = runs["ttl-sample Conure with the extension, task_dropout=0.3, seed 0"]
    assert "--extension=embedding=delta,pooling=attention,task_dropout=0.3,shared_lr_scale=1.0,item_loss=bpr" in trial


EXTENSION_CHOSEN = {"embedding": "delta", "pooling": "mean", "task_dropout": 0.0, "shared_lr_scale": 1.0}


def test_the_item_loss_enters_the_extensions_selection_from_the_chosen_settings_t1(tmp_path, monkeypatch):
    from tools.reproduction import plan

    monkeypatch.setattr(plan, "OUT", tmp_path)
    monkeypatch.setattr(plan, "extension_choices", lambda dataset: dict(EXTENSION_CHOSEN))
    runs = {label: (argv, prepare) for label, argv, prepare in plan.experiments(["ml-1m"], ["conure"], None, None,
                                                                                ["extension"])}
    argv, start = runs["ml-1m Conure with the extension, item_loss=softmax, seed 0"]
    assert "--extension=embedding=delta,pooling=mean,task_dropout=0.0,shared_lr_scale=1.0,item_loss=softmax" in argv
    assert not any("item_loss=bpr" in label for label in runs)  # that trial is the run of pooling=mean already
    assert not any(label.startswith("ml-1m Conure with the extension, seed") for label in runs)  # not chosen yet
    earlier = plan.extension_dir("ml-1m", 0, ("pooling", "mean"))
    for name in ("tp_t1", "ret_t1", "tp_t2", "ret_t2"):
        (earlier / "Models" / name).mkdir(parents=True)
    start()  # the trial starts from the earlier trial's T1 only: its T2 trains with the other loss
    assert sorted(p.name for p in (plan.extension_dir("ml-1m", 0, ("item_loss", "softmax")) / "Models").iterdir()) \
        == ["ret_t1", "tp_t1"]


def test_the_item_loss_chosen_is_recorded_and_runs_on_the_seeds_that_did_not_choose(tmp_path, monkeypatch):
    from tools.reproduction import extension, plan

    monkeypatch.setattr(plan, "OUT", tmp_path / "repro")
    monkeypatch.setattr(plan, "ARCHIVE", tmp_path / "results")
    monkeypatch.setattr(plan, "extension_choices", lambda dataset: {**EXTENSION_CHOSEN, "item_loss": "softmax"})
    valid = {plan.run_dir("ml-1m", 0): 0.10, plan.extension_dir("ml-1m", 0, ("pooling", "mean")): 0.11,
             plan.extension_dir("ml-1m", 0, ("item_loss", "softmax")): 0.13}
    for run, score in valid.items():
        for k in range(1, 7):
            path = plan.archived(run) / f"ret_t{k}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"selection_metric": "MRR@5", "valid_curve": [{"MRR@5": score * k}]}))
    rows = [line for line in extension.selection_table("ml-1m") if line.startswith("| item_loss")]
    scores = lambda value: " | ".join(f"{value * k:.4f}" for k in range(1, 7))  # noqa: E731
    assert rows == [f"| item_loss | bpr | {scores(0.11)} | 1.1000 |  |",
                    f"| item_loss | softmax | {scores(0.13)} | 1.3000 | yes |"]
    finals = [argv for label, argv, _ in plan.experiments(["ml-1m"], ["conure"], None, None, ["extension"])
              if label.startswith("ml-1m Conure with the extension, seed")]
    assert [a for argv in finals for a in argv if a.startswith("--seed")] == ["--seed=1", "--seed=2", "--seed=3"]
    assert all("--extension" in argv for argv in finals)
    item, head = (presets.extension_settings(name, given={"item_loss": "softmax"}) for name in ("ret_t3", "tp_t4"))
    assert item["full_softmax"] is True and "full_softmax" not in head
    assert presets.extension_settings("tp_t2")["full_softmax"] is False  # the default: the release's BPR


@pytest.mark.parametrize("mine, theirs, verdict", [
    ([0.30, 0.31, 0.32], [0.20, 0.21, 0.22], "better"),
    ([0.20, 0.21, 0.22], [0.30, 0.31, 0.32], "worse"),
    ([0.20, 0.25, 0.30], [0.24, 0.25, 0.26], "tie"),     # the gap is inside the spread
    ([0.30], [0.20, 0.21, 0.22], "one seed"),           # no spread to judge a single run by
])
def test_claims_count_a_difference_only_beyond_the_spread_over_seeds(mine, theirs, verdict):
    from tools.reproduction.results import compare

    results = lambda values: [{"accuracy": v} for v in values]
    assert compare(results(mine), results(theirs), "accuracy")[0] == verdict


@pytest.mark.parametrize("n_eval, bar, place", [
    (10**9, 0.09, "above"), (10**9, 0.10, "level"), (10**9, 0.12, "level"), (10**9, 0.13, "below"),
    (100, 0.09, "level"),   # the same gap, within the standard error of 100 held-out users (0.029)
])
def test_data_size_verdict_counts_a_gap_only_beyond_the_seeds_spread_and_the_held_out_error(n_eval, bar, place):
    from tools.reproduction import results as found

    results = [{"HR@5": 0.10, "n_eval": n_eval}, {"HR@5": 0.12, "n_eval": n_eval}]  # mean 0.11, std 0.0141
    assert found.place(results, bar, "HR@5") == place


def test_paper_width_row_names_its_t1_selection_when_it_differs_from_the_preset(tmp_path, monkeypatch):
    from tools.reproduction import plan, tables

    monkeypatch.setattr(plan, "ARCHIVE", tmp_path / "results")
    monkeypatch.setattr(plan, "DATASETS", {"ml-1m": {"data_dir": "D", "tasks": "1", "seeds": {}, "other_seeds": [0]}})
    monkeypatch.setattr(plan, "PAPER_WIDTH", {**plan.PAPER_WIDTH, "seeds": [0]})
    config = {"channels": 8, "dilations": [1, 4], "patience": 5, "valid_positions": 20}
    for directory, positions in ((plan.run_dir("ml-1m", 0), 20), (plan.paper_width_dir(0), 1)):
        archived = plan.archived(directory)
        archived.mkdir(parents=True)
        result = {"MRR@5": 0.1, "HR@5": 0.2, "stored_parameters": 10,
                  "config": {**config, "valid_positions": positions}}
        (archived / "ret_t1.json").write_text(json.dumps(result))
    preset_row, width_row = tables.paper_width_table()[2:4]
    assert "T1 selection" not in preset_row
    assert "(T1 selection: patience 5, on each validation user's last item)" in width_row


def test_learning_curves_report_each_share_beside_baselines_fitted_on_it(synthetic_dir, tmp_path, monkeypatch):
    plan = tiny_reproduction(monkeypatch, tmp_path, synthetic_dir, "1", ("conure",))
    monkeypatch.setattr(plan, "CURVES", {**plan.CURVES, "dataset": "tiny", "shares": [0.5],
                                              "methods": ["conure"], "seeds": [0]})
    planned = [argv for _, argv, _ in plan.experiments(parts=["curves"])]
    assert len(planned) == 1 and "--train_share=0.5" in planned[0]
    for share in (0.5, 1):
        run_all.main([f"--data_dir={synthetic_dir}", f"--out_dir={plan.share_dir(share, 0)}", "--tasks=1",
                      "--verbose=0", f"--train_share={share}"])
    report(destination=tmp_path)
    section = (tmp_path / "REPRODUCTION.md").read_text().split("## How much data: tiny")[1]
    section, verdicts = section.split("Against the simple baselines")
    rows = {row.split("|")[1].strip() + row.split("|")[2].strip(): row.split("|")[3:5]
            for row in section.splitlines() if row.startswith("| 0.5 |") or row.startswith("| 1 |")}
    users = {share: int(rows[f"{share}Conure"][0].replace(",", "")) for share in ("0.5", "1")}
    assert 0.35 < users["0.5"] / users["1"] < 0.65  # half the training users, give or take the hash
    assert "0.5strong simple baseline" in rows and "1strong simple baseline" in rows
    assert "| 0.5 | Conure | (n=1) |" in verdicts  # one seed: no spread to judge by
    assert (tmp_path / "figures" / "learning_curves.png").stat().st_size > 1000


@pytest.fixture
def two_task_archive(tmp_path, monkeypatch):
    """Hand-made results of a two-task data set: Conure, whose T1 stays as it was, and TERACON, whose T1
    falls from 0.130 at its own stage to 0.090 after T2 (two seeds each, on one machine)."""
    from tools.reproduction import plan

    monkeypatch.setattr(plan, "OUT", tmp_path / "repro")
    monkeypatch.setattr(plan, "ARCHIVE", tmp_path / "results")
    monkeypatch.setattr(plan, "DATASETS", {"tiny": {"data_dir": "none", "tasks": "1-2", "seeds": {},
                                                    "other_seeds": [0, 1]}})
    monkeypatch.setattr(plan, "METHODS", ("conure", "teracon"))
    files = {"conure": {"ret_t1": 0.120, "eval_t1_ret_t2": 0.120, "ret_t2": 0.050},
             "teracon": {"teracon_t1": 0.130, "eval_t1_teracon_t2": 0.090, "teracon_t2": 0.070}}
    for seed, shift in ((0, 0.0), (1, 0.002)):
        for scores in files.values():
            for name, score in scores.items():
                path = plan.archived(plan.run_dir("tiny", seed)) / f"{name}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"MRR@5": score / 2, "HR@5": score + shift, "NDCG@5": score / 2,
                                            "n_eval": 1000,
                                            "eval_settings": {"device": "CPU Some Machine, avx2 (x86_64, 2 cores)"}}))
    return plan


def test_the_final_model_table_reads_a_methods_last_stage_and_the_own_stage_table_its_own(two_task_archive):
    from tools.reproduction import tables

    final, own = (next(line for line in tables.quality_table("tiny", final=reading) if line.startswith("| TERACON"))
                  for reading in (True, False))
    assert final.startswith("| TERACON | Some Machine | 0.0450 ± 0.0000 / 0.0910 ± 0.0014 /")
    assert own.startswith("| TERACON | Some Machine | 0.0650 ± 0.0000 / 0.1310 ± 0.0014 /")
    conure = [line for line in tables.quality_table("tiny") if line.startswith("| Conure")]
    assert conure == [line for line in tables.quality_table("tiny", final=False) if line.startswith("| Conure")]


def test_a_verdict_reads_the_final_models_and_says_where_the_own_stage_reads_otherwise(two_task_archive):
    from tools.reproduction import verdicts

    line, = verdicts.conure_lines("tiny")
    assert line.startswith("- Conure vs TERACON on every task (final models; on Some Machine")
    assert "better on 1, within the spread on 0, worse on 1" in line
    assert "T1 +0.0300 (spread 0.0028; at its own stage: worse)" in line and "T2 -0.0200 (spread 0.0028)" in line


def test_a_claim_against_a_simple_baseline_counts_the_held_out_error_beside_the_seeds_spread(two_task_archive):
    from tools.reproduction import tables

    fitted = {json.dumps([k, {}]): {"trivial": {"HR@5": 0.01, "MRR@5": 0.01}, "strong": {"HR@5": hr, "MRR@5": hr / 2},
                                    "trivial_name": "popularity", "strong_name": "Markov chain"}
              for k, hr in ((1, 0.112), (2, 0.030))}
    (two_task_archive.archived(two_task_archive.run_dir("tiny", 0)) / run_all.BASELINES_FILE).write_text(json.dumps(fitted))
    line, = tables.simple_baseline_lines("tiny")
    # T1's lead (0.009) exceeds the seeds' std (0.0014) but not std + the held-out error on 1000 users (0.0114)
    assert "T1 HR@5 level with (0.1210 ± 0.0014 vs 0.1120, n=2)" in line
    assert "T2 HR@5 above (0.0510 ± 0.0014 vs 0.0300, n=2)" in line


def on(device, *values):
    return [{"accuracy": v, "eval_settings": {"device": f"CPU {device}, avx2 (x86_64, 2 cores)"}} for v in values]


def test_a_single_seed_is_not_placed_against_a_simple_baseline():
    from tools.reproduction.results import place

    one = [{"HR@5": 0.30, "n_eval": 100_000}]
    assert place(one, 0.10, "HR@5") == "one seed"  # far above, but no spread over seeds to judge by
    assert place(one * 2, 0.10, "HR@5") == "above"


def test_a_verdict_compares_one_kind_of_machine_where_both_sides_ran_on_it():
    from tools.reproduction.results import judge

    mine = on("Intel(R) Xeon(R) Processor", 0.50, 0.51, 0.52) + on("AMD EPYC", 0.40, 0.41, 0.42)
    verdict, difference, _, where, gap = judge(mine, on("AMD EPYC", 0.30, 0.31, 0.32), "accuracy", gap=0.5)
    assert (verdict, round(difference, 4), where, gap) == ("better", 0.1, "AMD EPYC", None)  # not Intel's 0.51 against 0.31


def test_a_verdict_across_two_machines_names_both_and_widens_the_spread_by_their_gap():
    from tools.reproduction.results import judge, machine_gap

    mine, theirs = on("AMD EPYC", 0.40, 0.41, 0.42), on("Intel(R) Xeon(R) Processor", 0.30, 0.31, 0.32)
    assert judge(mine, theirs, "accuracy")[::3] == ("two machines", "AMD EPYC vs Intel Xeon")  # no gap measured
    gap = machine_gap([(on("AMD EPYC", 0.40)[0], on("Intel(R) Xeon(R) Processor", 0.45)[0])], "accuracy")
    verdict, difference, noise, where, widened = judge(mine, theirs, "accuracy", gap)
    assert verdict == "better" and noise == pytest.approx(0.02 + 0.05) and widened == pytest.approx(0.05)
    assert where == "AMD EPYC vs Intel Xeon"
    assert judge(mine, theirs, "accuracy", 0.09)[0] == "tie"  # a gap as large as the difference: level


@pytest.fixture
def extension_archive(two_task_archive):
    """The extension's runs (seeds 1 and 2) beside the two-task archive: T1 at Conure's 0.120, T2 at 0.060
    (Conure 0.050, TERACON 0.070)."""
    plan = two_task_archive
    for seed, shift in ((1, 0.0), (2, 0.002)):
        for name, score in {"ret_t1": 0.120, "eval_t1_ret_t2": 0.120, "ret_t2": 0.060}.items():
            path = plan.archived(plan.extension_dir("tiny", seed)) / f"{name}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"MRR@5": score / 2, "HR@5": score + shift, "NDCG@5": score / 2, "n_eval": 1000,
                                        "eval_settings": {"device": "CPU Some Machine, avx2 (x86_64, 2 cores)"}}))
    return plan


def test_the_extension_trails_table_names_the_methods_ahead_and_the_better_simple_baseline(extension_archive):
    from tools.reproduction import extension

    plan = extension_archive
    fitted = {json.dumps([k, {}]): {"trivial": {"HR@5": trivial}, "strong": {"HR@5": strong},
                                    "trivial_name": "popularity", "strong_name": "Markov chain"}
              for k, trivial, strong in ((1, 0.200, 0.100), (2, 0.010, 0.030))}
    (plan.archived(plan.run_dir("tiny", 0)) / run_all.BASELINES_FILE).write_text(json.dumps(fitted))
    *rows, _, summary = extension.trails_table("tiny")
    assert rows[2].endswith("| below popularity (0.2000) |") and rows[3].endswith("| above Markov chain (0.0300) |")
    assert rows[2].split(" | ")[4] == "none" and rows[3].split(" | ")[4] == "TERACON"
    assert summary == ("- Of 2 tasks judged, the extension trails a method beyond the spread on 1: T2 (TERACON); "
                       "it is below the better simple baseline on T1.")


def test_the_extension_is_judged_against_conure_task_by_task_with_the_final_models(extension_archive):
    from tools.reproduction import extension

    line, = extension.against_conure_lines("tiny")
    assert line.startswith("- Conure with the extension vs Conure on every task (final models; on Some Machine")
    assert "better on 1, within the spread on 1, worse on 0" in line
    assert "T1 +0.0000 (spread 0.0028)" in line and "T2 +0.0100 (spread 0.0028)" in line
