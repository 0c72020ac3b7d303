"""Shared fixtures: tiny synthetic TTL data and a helper that runs stage scripts in-process."""
import os
import runpy
import shutil
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import checkpoint  # noqa: E402

from data_prep import synthetic_data  # noqa: E402
import settings  # noqa: E402
import stage  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# The public 10k-user TTL sample (docs/data.md), where CONURE_TTL_SAMPLE names it; tests that need
# it skip otherwise.
TTL_SAMPLE = Path(os.environ.get("CONURE_TTL_SAMPLE", "")) if os.environ.get("CONURE_TTL_SAMPLE") else None
needs_ttl_sample = pytest.mark.skipif(TTL_SAMPLE is None or not TTL_SAMPLE.is_dir(),
                                      reason="the TTL sample: set CONURE_TTL_SAMPLE to its folder")

# Small enough for a stage to take seconds on 2 cores.
TINY = ["--channels=16", "--dilations=[1,2]", "--epochs=1", "--batch_size=32", "--eval_batch_size=64", "--verbose=0"]


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    synthetic_data.write_synthetic(out, users=240, items=60, seed=0)
    return out


def run_stage(name, data_dir, out_dir, *overrides):
    """Run a stage the way its script does (script block < overrides), in this process."""
    script = ROOT / f"conure_{name}.py"
    block = settings.hyperparameters(runpy.run_path(str(script))) if script.exists() else {}
    tiny = TINY if name == "tp_t1" else [a for a in TINY if not a.startswith(("--channels", "--dilations"))]
    argv = [f"--data_dir={data_dir}", f"--out_dir={out_dir}", *tiny, *overrides]
    config, explicit = stage.make_config(name, block, argv)
    return stage.run_stage(name, config, explicit)


def rewrite_weights(directory, change):
    """Apply `change(weights dict)` to a checkpoint's weights.npz and re-sign its manifest, so only
    the weight-level proof can tell."""
    with np.load(directory / "weights.npz") as saved:
        weights = {name: saved[name].copy() for name in saved.files}
    change(weights)
    np.savez(directory / "weights.npz", **weights)
    manifest = checkpoint.read_json(directory / "manifest.json")
    manifest["files"]["weights.npz"] = checkpoint.file_sha256(directory / "weights.npz")
    checkpoint.write_json(manifest, directory / "manifest.json")


@pytest.fixture(scope="session")
def t1_run(synthetic_dir, tmp_path_factory):
    """tp_t1 then ret_t1 on the tiny synthetic data: (out_dir, tp results, ret results)."""
    out = tmp_path_factory.mktemp("t1_run")
    return out, run_stage("tp_t1", synthetic_dir, out), run_stage("ret_t1", synthetic_dir, out)


@pytest.fixture(scope="session")
def conure_chain(t1_run, synthetic_dir, tmp_path_factory):
    """T1 (from t1_run), then T2 and T3 with Conure: (out_dir, {stage: results})."""
    out = tmp_path_factory.mktemp("chain")
    shutil.copytree(t1_run[0], out, dirs_exist_ok=True)
    results = {"ret_t1": t1_run[2]}
    for name in ("tp_t2", "ret_t2", "tp_t3", "ret_t3"):
        results[name] = run_stage(name, synthetic_dir, out)
    return out, results
