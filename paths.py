"""Checks on the paths a user passes, made before any training or scoring starts.

An input must exist; an output must be writable; and an output replaces only an earlier output of
the same kind (a checkpoint folder, an export folder, a predictions file), never anything else
that stands at its path. An output file's format is the one its name (or --format) says, and a
new folder's name does not end in a file suffix. Every error names the argument and the path.
"""
import json
import os
from pathlib import Path


# Suffixes of files: a folder a command creates must not end in one, as its user expects a file.
FILE_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet", ".png", ".md", ".txt", ".keras", ".h5", ".onnx",
                 ".tflite", ".pb", ".zip", ".tar", ".gz")


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
    for created in (p for p in (path, *path.parents) if not p.exists()):
        if created.suffix.lower() in FILE_SUFFIXES:
            raise PathError(f"{name}={path}: would create a folder named like a {created.suffix} file")
    if not nearest.is_dir():
        raise PathError(f"{name}={path}: {nearest} is a file, not a folder")
    if not os.access(nearest, os.W_OK | os.X_OK):
        raise PathError(f"{name}={path}: {nearest} is not writable")
    return path


def output_format(path, name, formats, chosen=None):
    """The format of output file `path`: `chosen` (--format), else the one its suffix names; format
    f has the suffix .f. An unknown suffix without --format, or a --format its known suffix
    contradicts, is refused: a file never holds another format than its name says."""
    suffix = Path(path).suffix.lower()
    named = suffix[1:] if suffix[1:] in formats else None
    if chosen is not None and chosen not in formats:
        raise PathError(f"--format={chosen}: not one of {', '.join(formats)}")
    if chosen is None and named is None:
        known = ", ".join(f".{f}" for f in formats)
        raise PathError(f"{name}={path}: {f'unknown suffix {suffix}' if suffix else 'no suffix'}; "
                        f"known suffixes are {known}, or pass --format={'|'.join(formats)}")
    if chosen and named and chosen != named:
        raise PathError(f"{name}={path}: the suffix says {named}, --format says {chosen}")
    return chosen or named


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
