"""Stage checkpoints: written atomically, verified against their manifest before loading.

A checkpoint is a folder `<out_dir>/Models/<stage>/` holding
  weights.npz      every model variable but the owner maps, keyed by variable path
  ownership.npz    owner map of every conv kernel (pruning.py), ownership.json (ratios, counts)
  vocab.json       the T1 item vocabulary
  targets_tK.json  target vocabulary of each later task K
  config.json      the hyperparameters the stage ran with
  manifest.json    stage, task, chain of tasks, data fingerprints and a SHA-256 of every file above
The folder is built under a temporary name and renamed into place, so a reader never sees half
of one.
"""
import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or belongs to another run."""


def file_sha256(path, chunk=1 << 24):
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            sha.update(block)
    return sha.hexdigest()


@contextlib.contextmanager
def atomic_file(path, newline=None, binary=False):
    """Open `path` for writing text (or bytes) atomically: a temporary file in the same folder,
    flushed and renamed into place when the block ends; removed, leaving `path` as it was, if it raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") if binary else open(tmp, "w", encoding="utf-8", newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(obj, path):
    """Write JSON atomically."""
    with atomic_file(path) as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write(directory, write_files, manifest):
    """Create checkpoint `directory`: `write_files(tmp_dir)` writes the payload, then the manifest
    (with file hashes) is added and the folder renamed into place, replacing an older one (a folder
    with a manifest); anything else at `directory` is refused."""
    directory = Path(directory)
    if directory.exists() and not (directory / "manifest.json").is_file():
        raise CheckpointError(f"{directory}: exists and was not written by this project; refusing to replace it")
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write_files(tmp)
        files = {p.relative_to(tmp).as_posix(): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        write_json({"format": FORMAT, **manifest, "files": files}, tmp / "manifest.json")
        old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
        if directory.exists():
            os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_manifest(directory, run_first):
    """Manifest of a complete, uncorrupted checkpoint, or CheckpointError naming what to run."""
    directory = Path(directory)
    manifest_path = directory / "manifest.json"
    if not manifest_path.exists():
        raise CheckpointError(f"{directory}: no checkpoint here; run {run_first} first")
    try:
        manifest = read_json(manifest_path)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{manifest_path}: unreadable manifest ({e}); run {run_first} again")
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{manifest_path}: checkpoint format {manifest.get('format')}, expected {FORMAT}")
    for name, expected in manifest.get("files", {}).items():
        path = directory / name
        if not path.exists() or file_sha256(path) != expected:
            raise CheckpointError(f"{path}: missing or corrupt (hash mismatch); run {run_first} again")
    return manifest


def save_weights(path, variables):
    np.savez(path, **{v.path: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for v in variables})


def load_weights(path, variables):
    """Assign saved values to `variables` by path; every variable must be present with its shape."""
    with np.load(path) as saved:
        for variable in variables:
            if variable.path not in saved.files:
                raise CheckpointError(f"{path}: no value for {variable.path}")
            value = saved[variable.path]
            if tuple(value.shape) != tuple(variable.shape):
                raise CheckpointError(
                    f"{path}: {variable.path} has shape {value.shape}, model expects {variable.shape}")
            variable.assign(value)


def load_matching_weights(path, variables):
    """Assign saved values to the `variables` stored under their path with their shape; the rest
    keep their values (TERACON's student: a new head, gate and relation gates)."""
    with np.load(path) as saved:
        for variable in variables:
            if variable.path in saved.files and tuple(saved[variable.path].shape) == tuple(variable.shape):
                variable.assign(saved[variable.path])
