"""A stage's model: built from its task chain (heads, item deltas, patches, gates), restored from a
checkpoint, and the owner maps that share the conv kernels (and the item embedding) among tasks;
what each task adds to what must be stored."""
from pathlib import Path

import numpy as np

import checkpoint
import data_loader
import pruning
import settings
import tasks
import keras  # noqa: E402
from nextitnet import ConureModel, NextItemHead, TargetHead


def new_head(number, n_targets, l2, bias=False, pooling="last"):
    """T1's softmax head (which has a bias), or a later task's TargetHead, with a bias if `bias`,
    reading what `pooling` says."""
    if number == 1:
        return NextItemHead(n_targets, l2, name="head_t1")
    return TargetHead(n_targets, tasks.task(number).kind, l2, bias=bias, pooling=pooling, name=f"head_t{number}")


def add_task(model, entry):
    """Head (and PeterRec patches, HAT's or TERACON's gate) of a chain entry, freshly initialised."""
    head = new_head(entry["task"], entry["n_targets"], entry["l2"], entry.get("head_bias", False),
                    entry.get("pooling", "last"))
    model.add_head(entry["task"], head)
    if entry.get("delta"):
        model.add_delta(entry["task"], entry["delta"])
    if entry.get("patches"):
        model.add_patches(entry["task"], entry["patches"])
    if entry.get("gates"):
        model.add_gate(entry["task"], entry["gates"])


def build_model(vocab_size, config, chain=(), precision=None):
    """A freshly initialised (seeded) model with the heads, patches and gates of `chain`'s entries
    (and TERACON's relation gates once it holds two tasks). Variables are float32 under either
    precision; "mixed_bfloat16" computes in bfloat16."""
    keras.config.set_dtype_policy(precision or config["precision"])
    keras.utils.set_random_seed(config["seed"])
    model = ConureModel(vocab_size, config["channels"], config["dilations"], config["kernel_size"],
                        shared_embedding=config.get("embedding") == "owned", name="conure")
    for entry in chain:
        add_task(model, entry)
    model.smax = config.get("smax")
    if len(chain) > 1 and chain[-1].get("gates") == "teracon":
        model.add_relation()
    return model


def restore(directory, run_first, precision=None):
    """Model, manifest, T1 vocabulary, target vocabularies and prune ratios of a checkpoint; the
    model computes in `precision` (default: the checkpoint's)."""
    directory = Path(directory)
    manifest = checkpoint.read_manifest(directory, run_first)
    manifest["config"] = {**settings.ADDED_LATER, **manifest["config"]}  # saved before those settings existed
    vocab = data_loader.Vocab.load(directory / "vocab.json")
    chain = manifest["tasks"]
    targets = {e["task"]: data_loader.TargetVocab.load(directory / f"targets_t{e['task']}.json")
               for e in chain if e["task"] > 1}
    model = build_model(vocab.size, manifest["config"], chain, precision)
    checkpoint.load_weights(directory / "weights.npz", weight_variables(model))
    owners, prune_ratios = pruning.load(directory)
    set_owners(model, owners)
    return model, manifest, vocab, targets, prune_ratios


def chain_entry(manifest, number):
    for entry in manifest["tasks"]:
        if entry["task"] == number:
            return entry
    raise checkpoint.CheckpointError(f"checkpoint {manifest['stage']} holds no T{number}")


def owned_layers(model):
    """{name: (weights, owner map variable)} of everything shared by ownership: every conv kernel,
    and the item embedding once it is shared (docs/extension.md)."""
    found = {conv.path: (conv.kernel, conv.owner) for conv in model.backbone.convs}
    if model.backbone.embedding_owner is not None:
        found[model.backbone.embedding.path] = (model.backbone.embedding.embeddings, model.backbone.embedding_owner)
    return found


def owners_of(model):
    return {name: keras.ops.convert_to_numpy(owner) for name, (_, owner) in owned_layers(model).items()}


def set_owners(model, owners):
    for name, (_, owner) in owned_layers(model).items():
        if name not in owners:
            raise checkpoint.CheckpointError(f"ownership has no map for {name}")
        owner.assign(owners[name])


def weight_variables(model):
    """Everything a checkpoint stores in weights.npz (owner maps are stored by pruning.save)."""
    owners = {id(owner) for _, owner in owned_layers(model).values()}
    return [v for v in model.variables if id(v) not in owners]


def stored_parameters(model, number, phase):
    """Parameters task `number` adds to what must be stored, under the stage's method: Conure
    stores one backbone for all tasks (T1 counts the embedding and LayerNorms, each task its own
    conv weights, head and item delta; a shared embedding counts per task as the kernels do); SinMo
    and FineAll a whole model per task; SinMoAll one model in all (its later tasks add a head);
    FineSmax a head; PeterRec its patches and head; HAT and TERACON one model, each task its head
    and gate (TERACON's relation gates too)."""
    size = lambda variables: int(sum(np.prod(v.shape) for v in variables))  # noqa: E731
    owned = {id(v) for pair in owned_layers(model).values() for v in pair}  # the shared embedding, the owner maps
    shared = size(v for layer in model.backbone.shared_layers for v in layer.weights if id(v) not in owned)
    convs = size(conv.kernel for conv in model.backbone.convs)
    head = size(model.head(number).weights)
    gate = size([model.gates[str(number)].embedding]) if str(number) in model.gates else 0
    if phase in ("tp", "ret"):
        own = sum(int(np.count_nonzero(o == number)) for o in owners_of(model).values())
        delta = size(model.deltas[str(number)].weights) if str(number) in model.deltas else 0
        return own + head + delta + (shared if number == 1 else 0)
    if phase in ("sinmo", "finall") or number == 1:
        return shared + convs + head + gate
    if phase == "peterrec":
        return size(v for patch in model.patches[str(number)] for v in patch.weights) + head
    if phase == "teracon":  # the relation gates of N tasks hold 2 N^2 values per conv: this task's growth
        return head + gate + 2 * (2 * number - 1) * len(model.backbone.convs)
    return head + gate  # sinmoall (one shared model), finesmax, hat


def new_entry(task, number, config, rule, n_targets, task_sha256):
    """The chain entry a stage of `rule` (methods.Rule) adds for task `number`: what its head, item
    delta, patches and gate are, for rebuilding the model from the checkpoint."""
    return {"task": number, "name": task.name, "kind": task.kind, "file": task.file, "sha256": task_sha256,
            "n_targets": n_targets, "l2": config["l2"], "prune_ratio": config["prune_ratio"] if rule.prune else None,
            "patches": config["bottleneck"] if rule.patches else 0, **({"gates": rule.gates} if rule.gates else {}),
            **({"head_bias": True} if rule.linear_heads else {}),
            **({"pooling": config["pooling"]} if config["pooling"] != "last" else {}),
            **({"delta": config["delta_rank"]} if config["embedding"] == "delta" and number > 1 else {})}


def prune(model, number, config, prune_ratios, own_ratios):
    """Task `number` takes its share of the free weights of every owned layer (pruning.prune), the
    shared embedding at its own ratio. Returns the prune ratios, the owner maps' own ratios and the
    pruning report."""
    prune_ratios = prune_ratios + [config["prune_ratio"]]
    if config["embedding"] == "owned":
        name = model.backbone.embedding.path
        own_ratios = {name: own_ratios.get(name, []) + [config["embedding_prune_ratio"]]}
    weights = {name: keras.ops.convert_to_numpy(w) for name, (w, _) in owned_layers(model).items()}
    owners = {name: pruning.prune(weights[name], owner, number, own_ratios.get(name, prune_ratios))
              for name, owner in owners_of(model).items()}
    pruning.check(owners, prune_ratios, own_ratios)
    set_owners(model, owners)
    return prune_ratios, own_ratios, pruning.report({n: o for n, o in owners.items() if n not in own_ratios},
                                                    prune_ratios)


def ownership_counts(model, n_tasks):
    """{"free" or "T<k>": how many owned weights} over every owner map of the model."""
    counts = np.bincount(np.concatenate([o.ravel() for o in owners_of(model).values()]).astype(np.int64),
                         minlength=n_tasks + 1)
    return {("free" if k == 0 else f"T{k}"): int(c) for k, c in enumerate(counts)}


def save(directory, model, vocab, targets, config, prune_ratios, own_ratios):
    """A checkpoint's files: weights, owner maps, vocabularies and config (checkpoint.write signs them)."""
    checkpoint.save_weights(directory / "weights.npz", weight_variables(model))
    pruning.save(directory, owners_of(model), prune_ratios, own_ratios)
    vocab.save(directory / "vocab.json")
    for n, target_vocab in targets.items():
        target_vocab.save(directory / f"targets_t{n}.json")
    checkpoint.write_json(config, directory / "config.json")
