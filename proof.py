"""Zero forgetting proven on the weights: every parameter that task K's inference reads is
bit-identical between K's own checkpoint and a later one.

Score hashes depend on the hardware, the library build and the evaluation settings; this proof
does not. Task K reads the embedding, every LayerNorm, head K, K's PeterRec patches, gate or item
delta where a method has them, and the conv kernels: under Conure only the entries owned by tasks
1..K (the owner maps must agree on them; so too of the item embedding, where it is shared); under
HAT and TERACON the entries whose input and output channels are both open for K
(gates.open_channels) in either checkpoint; under the other methods every entry.

    python evaluate.py --task=1 --stage=ret_t4 --proof
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import checkpoint
import methods
import pruning


@dataclass
class Proof:
    task: int
    reference: str
    stage: str
    compared: int
    identical: int
    first_difference: str = ""

    @property
    def holds(self):
        return self.compared == self.identical

    def line(self):
        return f"parameters read by T{self.task}: {self.compared:,} compared, {self.identical:,} identical"

    def short(self):
        return f"{self.identical:,}/{self.compared:,}"


def reads(path, task):
    """Does task K's inference read the weight stored under `path`? (TERACON's relation gates,
    rebuilt at every stage, and the other tasks' gates they mix are left out.)"""
    return (path.startswith("backbone/") or path.startswith(f"head_t{task}/") or path.startswith(f"delta_t{task}/")
            or path.startswith(f"patch_t{task}_") or path == f"gate_t{task}/embedding")


def _bits(values):
    values = np.ascontiguousarray(values)
    return values.view(np.dtype(f"u{values.dtype.itemsize}"))


def _first(mismatch):
    return tuple(int(i) for i in np.argwhere(mismatch)[0])


def gated_reads(task, directories):
    """{conv path: bool [kernel, C_in, C_out]}: the conv weights a gated task K reads in any of
    the checkpoint folders, those whose input and output channels are open for K there."""
    import assembly  # the gates need the checkpoint's model
    import gates

    found = {}
    for directory in directories:
        model = assembly.restore(directory, directory.name)[0]
        for conv, (inputs, outputs) in zip(model.backbone.convs, gates.open_channels(model, task)):
            read = np.broadcast_to(inputs[:, None] & outputs[None, :], tuple(conv.kernel.shape))
            found[conv.path] = found.get(conv.path, False) | read
    return found


def prove(task, reference_dir, later_dir, owned_only, read_masks=None):
    """Compare what task K reads in two checkpoint folders. `owned_only`: Conure's inference view
    (conv entries owned by tasks 1..K); `read_masks` ({conv path: bool mask}, gated_reads): the
    conv entries a gated task reads; otherwise every conv entry."""
    reference_dir, later_dir = Path(reference_dir), Path(later_dir)
    for directory in (reference_dir, later_dir):
        checkpoint.read_manifest(directory, directory.name)  # complete and uncorrupted
    owners = [pruning.load(d)[0] for d in (reference_dir, later_dir)]
    compared = identical = 0
    first_difference = ""
    with np.load(reference_dir / "weights.npz") as before, np.load(later_dir / "weights.npz") as after:
        for path in (p for p in before.files if reads(p, task)):
            if path not in after.files:
                raise checkpoint.CheckpointError(f"{later_dir / 'weights.npz'}: no value for {path}, which T{task} reads")
            old, new = before[path], after[path]
            if old.shape != new.shape:
                raise checkpoint.CheckpointError(f"{path}: shape {old.shape} in {reference_dir.name}, "
                                                 f"{new.shape} in {later_dir.name}")
            read, owner_differs = np.ones(old.shape, bool), np.zeros(old.shape, bool)
            conv = path.rsplit("/", 1)[0]
            if read_masks and conv in read_masks:
                read = read_masks[conv]
            if owned_only and conv in owners[0]:
                old_owner, new_owner = owners[0][conv], owners[1][conv]
                read = ((old_owner > 0) & (old_owner <= task)) | ((new_owner > 0) & (new_owner <= task))
                owner_differs = read & (old_owner != new_owner)
                if owner_differs.any() and not first_difference:
                    where = _first(owner_differs)
                    first_difference = f"{conv}: owner map differs at {list(where)} ({old_owner[where]} vs {new_owner[where]})"
            same = (_bits(old) == _bits(new)) & read & ~owner_differs
            compared += int(read.sum())
            identical += int(same.sum())
            if not first_difference and (read & ~same).any():
                where = _first(read & ~same)
                first_difference = f"{path}{list(where)}: {old[where]} vs {new[where]}"
    return Proof(task, reference_dir.name, later_dir.name, compared, identical, first_difference)


def prove_stage(task, stage_name, models_dir, reference=None):
    """Proof for task K between its own checkpoint (or `reference`) and `stage_name`."""
    phase = methods.parse_stage(stage_name)[0]
    reference = reference or methods.own_stage(phase, task)
    directories = (Path(models_dir) / reference, Path(models_dir) / stage_name)
    read_masks = gated_reads(task, directories) if methods.RULES[phase].gates else None
    return prove(task, *directories, owned_only=phase in methods.CONURE_PHASES, read_masks=read_masks)
