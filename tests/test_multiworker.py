"""Multi-worker training on localhost: two worker processes joined by each engine's own protocol
(TF_CONFIG for TensorFlow's MultiWorkerMirroredStrategy, KERAS_DISTRIBUTION_* for JAX over gloo)
train tp_t1 like one process at the same global batch, and only worker 0 writes."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, TINY

WORKERS = 2
TIMEOUT_S = 240
ARGS = [a for a in TINY if not a.startswith("--verbose")] + ["--verbose=1"]


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def cluster_env(backend, index, ports):
    """The variables a user sets on worker `index` (docs/scale.md, "Several machines")."""
    addresses = [f"localhost:{p}" for p in ports]
    if backend == "tensorflow":
        return {"TF_CONFIG": json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})}
    return {"KERAS_DISTRIBUTION_JOB_ADDRESSES": ",".join(addresses),
            "KERAS_DISTRIBUTION_NUM_PROCESSES": str(len(ports)), "KERAS_DISTRIBUTION_PROCESS_ID": str(index)}


def start(backend, data_dir, out_dir, extra_env, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "XLA_FLAGS")}
    env.update(KERAS_BACKEND=backend, PYTHONPATH=str(ROOT), **extra_env)
    command = [sys.executable, str(ROOT / "conure_tp_t1.py"), f"--data_dir={data_dir}", f"--out_dir={out_dir}",
               *ARGS, *args]
    return subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(processes):
    """Outputs of all processes; every one must exit 0 within TIMEOUT_S (a lost peer can hang the rest)."""
    try:
        outputs = [p.communicate(timeout=TIMEOUT_S)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, out in zip(processes, outputs):
        assert p.returncode == 0, out[-3000:]
    return outputs


@pytest.fixture(scope="module", params=["tensorflow", "jax"])
def multiworker_run(request, synthetic_dir, tmp_path_factory):
    """Two workers (each with its own out_dir, as on two machines) and a one-process reference run
    with the same global batch, all started at once. The reference runs without XLA, like the
    data-parallel step on TensorFlow: XLA's fusions alone move these weights by ~5e-6."""
    backend = request.param
    if backend == "jax":
        pytest.importorskip("jax")
    tmp = tmp_path_factory.mktemp(f"multiworker_{backend}")
    ports = free_ports(WORKERS)
    outs = [tmp / f"worker{i}" for i in range(WORKERS)]
    processes = [start(backend, synthetic_dir, out, cluster_env(backend, i, ports), "--data_parallel=True")
                 for i, out in enumerate(outs)]
    processes.append(start(backend, synthetic_dir, tmp / "one_process", {}, "--xla=False"))
    logs = finish(processes)
    return {"backend": backend, "outs": outs, "logs": logs[:WORKERS], "reference": tmp / "one_process"}


def weights(out_dir):
    with np.load(out_dir / "Models" / "tp_t1" / "weights.npz") as saved:
        return {name: saved[name] for name in saved.files}


def test_multiworker_every_worker_joins_one_two_device_run(multiworker_run):
    for index, log in enumerate(multiworker_run["logs"]):
        if multiworker_run["backend"] == "tensorflow":
            assert f"data parallel: 2 devices, worker {index} of 2 (MultiWorkerMirroredStrategy)" in log
        else:
            assert f"data parallel: 2 devices, process {index} of 2" in log


def test_multiworker_weights_equal_one_process_run_at_the_same_global_batch(multiworker_run):
    expected, got = weights(multiworker_run["reference"]), weights(multiworker_run["outs"][0])
    assert expected.keys() == got.keys()
    worst = max(float(np.abs(expected[k] - got[k]).max()) for k in expected)
    assert worst < 1e-5, worst


def test_multiworker_only_worker_0_writes_checkpoint_and_results(multiworker_run):
    chief, other = multiworker_run["outs"]
    assert (chief / "Models" / "tp_t1" / "manifest.json").is_file()
    assert (chief / "Results" / "tp_t1.json").is_file()
    assert not other.exists() or not any(other.rglob("*")), sorted(other.rglob("*"))
