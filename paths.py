"""Checks on the paths a user passes, made before any training or scoring starts.

An input must exist; an output must be writable; and an output replaces only an earlier output of
the same kind (a checkpoint folder, an export folder, a predictions file), never anything else
that stands at its path. Every error names the argument and the path.
"""
import json
import os
from pathlib import Path


class PathError(ValueError):
    """A path a command cannot read, cannot write, or must not replace."""


def input_file(path, name):
    path = Path(path)
    if not path.is_file():
        raise PathError(f"{name}={path}: {'a folder, not a file' if path.is_dir() else 'file not found'}")
    return path


def input_dir(path, name):
    path = Path(path)
    if not path.is_dir():
        raise PathError(f"{name}={path}: {'a file, not a folder' if path.exists() else 'folder not found'}")
    return path


def output_dir(path, name):
    """A folder the command may create (with its parents) or write into."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PathError(f"{name}={path}: exists and is not a folder")
    nearest = next(p for p in (path, *path.parents) if p.exists())
    if not nearest.is_dir():
        raise PathError(f"{name}={path}: {nearest} is a file, not a folder")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise PathError(f"{name}={path}: {nearest} is not writable")
    return path


def replaceable(path, name, kind, is_kind):
    """`path` may be written: nothing stands there yet, or an earlier `kind` (`is_kind(path)`)."""
    path = Path(path)
    output_dir(path.parent, name)
    if path.exists() and not is_kind(path):
        raise PathError(f"{name}={path}: exists and is not {kind}; refusing to replace it")
    return path


def manifest_folder(key):
    """is_kind for a folder written by checkpoint.write whose manifest.json has the entry `key`
    ("tasks": a stage checkpoint, "signatures": an export)."""
    def is_kind(path):
        try:
            return key in json.loads((Path(path) / "manifest.json").read_text())
        except (OSError, ValueError, TypeError):
            return False
    return is_kind
