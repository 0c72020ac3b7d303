"""Paths a user passes are checked before any work starts, and an output replaces only an earlier
output of its own kind: anything else at its path is refused and left as it was."""
import shutil

import pandas as pd
import pytest

import checkpoint
import export
import paths
import predict
import prepare_data
import run_all
import stage
from conftest import TINY, run_stage


@pytest.fixture
def out(t1_run, tmp_path):
    """An output folder holding finished T1 checkpoints."""
    copy = tmp_path / "out"
    shutil.copytree(t1_run[0], copy)
    return copy


def a_foreign_folder(path):
    """A folder the project did not write, with something of the user's in it."""
    path.mkdir(parents=True)
    (path / "notes.txt").write_text("mine\n")
    return path


def run_main(main, argv, capsys):
    """(exit status, the one error line) of a command's main()."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    return exit_info.value.code, err


def test_output_folder_that_is_a_file_is_refused(synthetic_dir, tmp_path):
    (tmp_path / "out").write_text("a file\n")
    with pytest.raises(paths.PathError, match=r"out_dir=.*out: exists and is not a folder"):
        run_stage("tp_t1", synthetic_dir, tmp_path / "out")


def test_missing_data_folder_is_named(tmp_path):
    with pytest.raises(paths.PathError, match=r"data_dir=.*nowhere: folder not found"):
        run_stage("tp_t1", tmp_path / "nowhere", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_stage_refuses_to_replace_a_folder_it_did_not_write(synthetic_dir, tmp_path):
    foreign = a_foreign_folder(tmp_path / "out" / "Models" / "tp_t1")
    with pytest.raises(paths.PathError, match="tp_t1: exists and is not a checkpoint; refusing to replace it"):
        run_stage("tp_t1", synthetic_dir, tmp_path / "out")
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]
    assert not (tmp_path / "out" / "Results").exists()


def test_stage_replaces_its_own_earlier_checkpoint(out, synthetic_dir):
    before = checkpoint.read_json(out / "Models" / "ret_t1" / "manifest.json")
    run_stage("ret_t1", synthetic_dir, out, "--epochs=0")
    after = checkpoint.read_json(out / "Models" / "ret_t1" / "manifest.json")
    assert after["fingerprint"] != before["fingerprint"]


def test_checkpoint_write_refuses_a_folder_without_a_manifest(tmp_path):
    foreign = a_foreign_folder(tmp_path / "ckpt")
    with pytest.raises(checkpoint.CheckpointError, match="not written by this project"):
        checkpoint.write(foreign, lambda d: (d / "x").write_text("x"), {"stage": "x"})
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]


def test_run_all_checks_every_stage_before_the_first_trains(synthetic_dir, tmp_path, capsys):
    a_foreign_folder(tmp_path / "out" / "Models" / "ret_t2")
    code, err = run_main(run_all.main, [f"--data_dir={synthetic_dir}", f"--out_dir={tmp_path / 'out'}",
                                        "--tasks=1-2", "--verbose=0", "--channels=16", "--dilations=1,2"], capsys)
    assert code == 2 and "ret_t2: exists and is not a checkpoint" in err
    assert sorted(p.name for p in (tmp_path / "out" / "Models").iterdir()) == ["ret_t2"]


def test_run_all_checks_every_stage_setting_before_the_first_trains(synthetic_dir, tmp_path, capsys):
    code, err = run_main(run_all.main, [f"--data_dir={synthetic_dir}", f"--out_dir={tmp_path / 'out'}",
                                        "--tasks=1-2", "--prune_ratio=1.5", "--verbose=0"], capsys)
    assert code == 2 and "prune_ratio=1.5: must lie in (0, 1)" in err
    assert not (tmp_path / "out" / "Models").exists()


def test_predict_refuses_to_replace_a_file_it_did_not_write(out, synthetic_dir, tmp_path, capsys):
    users, target = tmp_path / "users.csv", tmp_path / "report.csv"
    users.write_text("3,5\n")
    target.write_text("my report\n")
    code, err = run_main(predict.main, [f"--out_dir={out}", "--stage=ret_t1", f"--input={users}",
                                        f"--out={target}"], capsys)
    assert code == 2 and "--out=" in err and "is not a predictions file; refusing to replace it" in err
    assert target.read_text() == "my report\n"


def test_predict_names_a_missing_input_before_loading_anything(tmp_path, capsys):
    code, err = run_main(predict.main, [f"--out_dir={tmp_path / 'no_models'}", "--stage=ret_t1",
                                        f"--input={tmp_path / 'users.csv'}", f"--out={tmp_path / 'p.jsonl'}"], capsys)
    assert code == 2 and "--input=" in err and "users.csv: file not found" in err


def test_predict_replaces_its_own_earlier_output(out, tmp_path):
    users, target = tmp_path / "users.csv", tmp_path / "p.csv"
    users.write_text("3,5\n3,5,7\n")
    for k in (3, 2):  # the second run replaces the first's CSV
        predict.main([f"--out_dir={out}", "--stage=ret_t1", f"--input={users}", f"--out={target}", f"--k={k}"])
    assert target.read_text().splitlines()[0].endswith("next_item_score_2")


def test_predict_replaces_its_own_earlier_parquet_output(out, tmp_path):
    users, target = tmp_path / "users.csv", tmp_path / "p.parquet"
    users.write_text("3,5\n3,5,7\n")
    for k in (3, 2):  # the second run replaces the first's Parquet file
        predict.main([f"--out_dir={out}", "--stage=ret_t1", f"--input={users}", f"--out={target}", f"--k={k}"])
    assert list(pd.read_parquet(target).columns)[-1] == "next_item_score_2"


def test_predict_refuses_to_replace_a_parquet_file_it_did_not_write(out, tmp_path, capsys):
    users, target = tmp_path / "users.csv", tmp_path / "sales.parquet"
    users.write_text("3,5\n")
    pd.DataFrame({"region": ["north"], "sales": [3]}).to_parquet(target)
    code, err = run_main(predict.main, [f"--out_dir={out}", "--stage=ret_t1", f"--input={users}",
                                        f"--out={target}"], capsys)
    assert code == 2 and "is not a predictions file; refusing to replace it" in err
    assert pd.read_parquet(target)["region"].tolist() == ["north"]


@pytest.mark.parametrize("name", ["answers.csv", "model.keras", "export.ZIP", "new.json/1"])
def test_a_new_folder_named_like_a_file_is_refused(name, tmp_path):
    with pytest.raises(paths.PathError, match=r"export_dir=.*: would create a folder named like a \.\w+ file"):
        paths.output_dir(tmp_path / name, "--export_dir")


def test_an_existing_folder_named_like_a_file_is_used(tmp_path):
    (tmp_path / "runs.csv").mkdir()
    assert paths.output_dir(tmp_path / "runs.csv", "out_dir") == tmp_path / "runs.csv"


def test_export_refuses_a_folder_named_like_a_file_before_loading(tmp_path, capsys):
    code, err = run_main(export.main, [f"--out_dir={tmp_path / 'no_models'}", "--stage=ret_t1",
                                       f"--export_dir={tmp_path / 'model.zip'}"], capsys)
    assert code == 2 and "--export_dir=" in err and "named like a .zip file" in err
    assert list(tmp_path.iterdir()) == []


def test_export_refuses_a_folder_that_is_not_an_export(out, tmp_path, capsys):
    a_checkpoint = out / "Models" / "ret_t1"
    code, err = run_main(export.main, [f"--out_dir={out}", "--stage=ret_t1", f"--export_dir={a_checkpoint}"], capsys)
    assert code == 2 and "--export_dir=" in err and "is not an export; refusing to replace it" in err
    assert checkpoint.read_manifest(a_checkpoint, "conure_ret_t1.py")["stage"] == "ret_t1"


def test_prepare_data_refuses_an_output_that_is_a_file(tmp_path, capsys):
    (tmp_path / "out").write_text("a file\n")
    assert prepare_data.main(["synthetic", f"--out={tmp_path / 'out'}", "--users=20", "--items=8"]) == 2
    assert "--out=" in capsys.readouterr().err
    assert (tmp_path / "out").read_text() == "a file\n"


def test_evaluate_names_a_missing_data_folder(out, tmp_path, capsys):
    import evaluate

    code, err = run_main(evaluate.main, ["--task=1", "--stage=ret_t1", f"--data_dir={tmp_path / 'gone'}",
                                         f"--out_dir={out}"], capsys)
    assert code == 2 and "data_dir=" in err and "gone: folder not found" in err


def test_evaluate_refuses_a_task_its_stage_pruned_but_did_not_retrain(out, synthetic_dir, capsys):
    import evaluate

    code, err = run_main(evaluate.main, ["--task=1", "--stage=tp_t1", f"--data_dir={synthetic_dir}",
                                         f"--out_dir={out}"], capsys)
    assert code == 2 and "tp_t1 holds T1 pruned but not retrained: use ret_t1" in err


def test_tensorboard_folder_that_is_a_file_is_refused(synthetic_dir, tmp_path):
    (tmp_path / "logs").write_text("a file\n")
    config, explicit = stage.make_config("tp_t1", {}, [f"--data_dir={synthetic_dir}", f"--out_dir={tmp_path / 'o'}",
                                                       f"--tensorboard_dir={tmp_path / 'logs'}", *TINY])
    with pytest.raises(paths.PathError, match="tensorboard_dir=.*logs is a file, not a folder"):
        stage.run_stage("tp_t1", config, explicit)
