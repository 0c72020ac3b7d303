"""NextItNet backbone with per-task weight ownership (Conure), and the task heads.

Everything here is `keras.layers` + `keras.ops`, so it runs on the TensorFlow and JAX backends.

Ownership (docs/design.md section 6): every conv kernel carries an int32 `owner` map of its own shape,
0 = free, k = owned by task k. The task k and phase given to ConureModel.task_loss / task_scores
pick the weights the forward pass sees:
  "train"   stop_gradient(W * [0 < owner < k]) + W * [owner == 0]
  "retrain" stop_gradient(W * [0 < owner < k]) + W * [owner == k]
  "infer"   W * [0 < owner <= k]
  "full"    W, ownership ignored (the baselines of docs/design.md section 9)
Weights outside the trainable part get an exact zero gradient, so a fresh Adam never moves them.
PeterRec's per-task "model patches" (small residual bottlenecks after every conv) live here too,
and HAT's and TERACON's task gates on the conv outputs (gates.py).

Beyond the release (docs/extension.md): the item embedding can carry an owner map and the same
views as the kernels (`NextItNet.share_embedding`), or each later task can add a low-rank table
of its own to it (`ItemDelta`); a later task's head can pool every non-padding position instead
of reading the last one (`TargetHead`'s `pooling`).
"""
import keras
from keras import ops

import gates as task_gates
import losses
from data_loader import PAD

PHASES = ("train", "retrain", "infer", "full")


def owned_kernel(kernel, owner, task, phase):
    """The kernel a task sees in a phase (see module docstring)."""
    if phase == "full":
        return kernel
    owner = ops.cast(owner, "int32")
    if phase == "infer":
        return kernel * ops.cast((owner > 0) & (owner <= task), kernel.dtype)
    trainable_owner = 0 if phase == "train" else task
    frozen = ops.stop_gradient(kernel * ops.cast((owner > 0) & (owner < task), kernel.dtype))
    return frozen + kernel * ops.cast(owner == trainable_owner, kernel.dtype)


# How a causal conv computes: "matmul" (the default: one matmul over the kernel's shifted copies of
# the input) or "conv" (the backend's dilated convolution: the same function, other float roundings).
CONV_OPS = ("matmul", "conv")


class MaskedCausalConv1D(keras.layers.Layer):
    """Causal dilated 1-D convolution (no bias) whose kernel is shared among tasks by ownership.

    Left-pads by (kernel_size - 1) * dilation, so output i sees inputs 0..i only. The
    convolution is one matmul over the kernel_size shifted copies of the input.
    """

    def __init__(self, filters, kernel_size, dilation, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.dilation = filters, kernel_size, dilation
        self.task, self.phase = 1, "train"
        self.op = "matmul"  # one of CONV_OPS

    def build(self, input_shape):
        shape = (self.kernel_size, input_shape[-1], self.filters)
        self.kernel = self.add_weight(
            name="kernel", shape=shape, initializer=keras.initializers.TruncatedNormal(stddev=0.02)
        )
        self.owner = self.add_weight(  # int32: tf.distribute's multi-worker broadcast has no int8
            name="owner", shape=shape, dtype="int32", initializer="zeros", trainable=False
        )

    def call(self, x):
        kernel = owned_kernel(self.kernel, self.owner, self.task, self.phase)
        length = ops.shape(x)[1]
        reach = (self.kernel_size - 1) * self.dilation
        padded = ops.pad(x, [[0, 0], [reach, 0], [0, 0]])
        if self.op == "conv":
            return ops.conv(padded, ops.cast(kernel, x.dtype), padding="valid", dilation_rate=self.dilation)
        taps = [padded[:, j * self.dilation : j * self.dilation + length, :] for j in range(self.kernel_size)]
        stacked = ops.concatenate(taps, axis=-1) if len(taps) > 1 else taps[0]
        flat_kernel = ops.reshape(ops.cast(kernel, x.dtype), (-1, self.filters))
        return ops.matmul(stacked, flat_kernel)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "dilation": self.dilation}


class ItemDelta(keras.layers.Layer):
    """A task's low-rank addition to the item embedding, read by that task alone: the embedding of
    item i becomes E[i] + rows[i] @ basis ([items, rank] x [rank, C]). `rows` start at zero, so the
    task starts from the embedding it is added to."""

    def __init__(self, n_items, rank, **kwargs):
        super().__init__(**kwargs)
        self.n_items, self.rank = n_items, rank

    def build(self, input_shape):
        channels = input_shape[-1]
        self.rows = self.add_weight(name="rows", shape=(self.n_items, self.rank), initializer="zeros")
        self.basis = self.add_weight(name="basis", shape=(self.rank, channels),
                                     initializer=keras.initializers.TruncatedNormal(stddev=0.02))

    def call(self, tokens):
        return ops.matmul(ops.take(self.rows, tokens, axis=0), self.basis)

    def get_config(self):
        return {**super().get_config(), "n_items": self.n_items, "rank": self.rank}


class ModelPatch(keras.layers.Layer):
    """PeterRec's model patch: y + up(relu(down(y))), a bottleneck that starts as the identity."""

    def __init__(self, bottleneck, **kwargs):
        super().__init__(**kwargs)
        self.bottleneck = bottleneck

    def build(self, input_shape):
        channels = input_shape[-1]
        self.down = self.add_weight(name="down", shape=(channels, self.bottleneck),
                                    initializer=keras.initializers.TruncatedNormal(stddev=0.02))
        self.up = self.add_weight(name="up", shape=(self.bottleneck, channels), initializer="zeros")

    def call(self, y):
        return y + ops.matmul(ops.relu(ops.matmul(y, ops.cast(self.down, y.dtype))), ops.cast(self.up, y.dtype))

    def get_config(self):
        return {**super().get_config(), "bottleneck": self.bottleneck}


class ResidualBlock(keras.layers.Layer):
    """Pre-LN NextItNet block: x + conv2(relu(LN(conv1(relu(LN(x)))))), dilations d and 2d."""

    def __init__(self, channels, kernel_size, dilation, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.kernel_size, self.dilation = channels, kernel_size, dilation
        self.norm1 = keras.layers.LayerNormalization(epsilon=1e-8, name="norm1")
        self.conv1 = MaskedCausalConv1D(channels, kernel_size, dilation, name="conv1")
        self.norm2 = keras.layers.LayerNormalization(epsilon=1e-8, name="norm2")
        self.conv2 = MaskedCausalConv1D(channels, kernel_size, 2 * dilation, name="conv2")

    def build(self, input_shape):
        for layer in (self.norm1, self.conv1, self.norm2, self.conv2):
            layer.build(input_shape)

    def call(self, x, patches=None, gates=None, gate_position="conv"):
        """`patches`: PeterRec's (patch after conv1, patch after conv2), or None. `gates`: HAT's or
        TERACON's (gate on conv1's output channels, on conv2's), or None; `gate_position` where the
        first sits: on conv1's output ("conv") or after the LayerNorm and ReLU that follow it
        ("activation"); the second is always on conv2's output (gates.POSITIONS)."""
        h = self.conv1(ops.relu(self.norm1(x)))
        if patches:
            h = patches[0](h)
        if gates is not None and gate_position == "conv":
            h = h * ops.cast(gates[0], h.dtype)
        h = ops.relu(self.norm2(h))
        if gates is not None and gate_position == "activation":
            h = h * ops.cast(gates[0], h.dtype)
        h = self.conv2(h)
        if patches:
            h = patches[1](h)
        if gates is not None:
            h = h * ops.cast(gates[1], h.dtype)
        return x + h

    def get_config(self):
        return {**super().get_config(), "channels": self.channels,
                "kernel_size": self.kernel_size, "dilation": self.dilation}


class NextItNet(keras.layers.Layer):
    """Item embedding (no positions) followed by the residual blocks: tokens [B, T] -> [B, T, C].
    With `shared_embedding`, the item embedding has an owner map like a kernel's (docs/extension.md)."""

    def __init__(self, vocab_size, channels=256, dilations=(1, 4, 1, 4, 1, 4, 1, 4), kernel_size=3,
                 shared_embedding=False, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.channels = vocab_size, channels
        self.dilations, self.kernel_size = tuple(dilations), kernel_size
        self.embedding = keras.layers.Embedding(
            vocab_size, channels, embeddings_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="embedding",
        )
        self.blocks = [ResidualBlock(channels, kernel_size, d, name=f"block_{i}") for i, d in enumerate(dilations)]
        self.shared_embedding, self.embedding_owner = shared_embedding, None
        self.task, self.phase = 1, "train"

    def build(self, input_shape):
        self.embedding.build(input_shape)
        if self.shared_embedding:  # the item embedding's owner map: 0 = free, k = owned by task k
            self.embedding_owner = self.add_weight(name="embedding_owner", shape=(self.vocab_size, self.channels),
                                                   dtype="int32", initializer="zeros", trainable=False)
        for block in self.blocks:
            block.build((*input_shape, self.channels))

    def embed(self, tokens):
        """The item embedding of `tokens`; with an owner map, the rows as task and phase see them."""
        if self.embedding_owner is None:
            return self.embedding(tokens)
        rows = ops.take(self.embedding.embeddings, tokens, axis=0)
        owner = ops.take(self.embedding_owner, tokens, axis=0)
        return ops.cast(owned_kernel(rows, owner, self.task, self.phase), self.embedding.compute_dtype)

    def call(self, tokens, patches=None, gates=None, gate_position="conv", delta=None):
        """`patches`: one ModelPatch per conv (PeterRec), or None; `gates`: [convs, channels], or None;
        `delta`: an ItemDelta added to the item embedding, or None."""
        x = self.embed(tokens)
        if delta is not None:
            x = x + ops.cast(delta(tokens), x.dtype)
        for i, block in enumerate(self.blocks):
            x = block(x, patches=patches[2 * i:2 * i + 2] if patches else None,
                      gates=None if gates is None else (gates[2 * i], gates[2 * i + 1]), gate_position=gate_position)
        return x

    @property
    def convs(self):
        return [conv for block in self.blocks for conv in (block.conv1, block.conv2)]

    @property
    def shared_layers(self):
        """Embedding and LayerNorms: trained in T1's train phase only."""
        return [self.embedding] + [n for block in self.blocks for n in (block.norm1, block.norm2)]

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "channels": self.channels,
                "dilations": list(self.dilations), "kernel_size": self.kernel_size,
                "shared_embedding": self.shared_embedding}


def l2_penalty(scale, table):
    """TF1's l2_regularizer: scale * sum(table ** 2) / 2. At scale 0 no term is built, so the table
    gets no dense gradient from it (a sparse table update stays sparse)."""
    return 0.5 * scale * ops.sum(ops.square(table)) if scale else 0.0


class NextItemHead(keras.layers.Layer):
    """T1 output softmax: weights [items, C] (normal 0.01) and bias (0.1) at every position.
    `l2` penalises the weights as TargetHead's does its table (the release has none for T1)."""

    def __init__(self, n_items, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.n_items, self.l2 = n_items, l2

    def build(self, input_shape):
        channels = input_shape[-1]
        self.weight = self.add_weight(
            name="weight", shape=(self.n_items, channels),
            initializer=keras.initializers.RandomNormal(stddev=0.01),
        )
        self.bias = self.add_weight(
            name="bias", shape=(self.n_items,), initializer=keras.initializers.Constant(0.1)
        )

    def call(self, hidden):
        logits = ops.matmul(hidden, ops.transpose(ops.cast(self.weight, hidden.dtype)))
        return logits + ops.cast(self.bias, hidden.dtype)

    def score(self, user):
        """float32 scores of every item for ranking, whatever the compute dtype (bfloat16 ties)."""
        return ops.matmul(ops.cast(user, "float32"), ops.transpose(self.weight)) + self.bias

    def penalty(self):
        return l2_penalty(self.l2, self.weight)

    def get_config(self):
        return {**super().get_config(), "n_items": self.n_items, "l2": self.l2}


POOLINGS = ("last", "mean", "attention")  # what a later task's head reads of the last block's output


class TargetHead(keras.layers.Layer):
    """T2+ head: one embedding row per target item or class label; score = <user, row>, plus a
    bias per target with `bias` (TERACON's linear heads: rows normal 0.01, bias 0.1).

    `kind` is "item" (BPR loss) or "class" (logistic loss); `l2` is TF1's l2_regularizer
    scale: the penalty is l2 * sum(table ** 2) / 2. `pooling` is what the head reads: the last
    position ("last", the release), or every non-padding position, averaged ("mean") or weighted by
    a softmax of their dot product with a learned query ("attention", starting as the mean).
    """

    def __init__(self, n_targets, kind="item", l2=0.0, bias=False, pooling="last", **kwargs):
        super().__init__(**kwargs)
        if kind not in losses.PAIRWISE:
            raise ValueError(f"kind must be one of {sorted(losses.PAIRWISE)}, got {kind!r}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.n_targets, self.kind, self.l2, self.has_bias, self.pooling = n_targets, kind, l2, bias, pooling

    def build(self, input_shape):
        rows = (keras.initializers.RandomNormal(stddev=0.01) if self.has_bias
                else keras.initializers.TruncatedNormal(stddev=0.02))
        self.table = self.add_weight(name="table", shape=(self.n_targets, input_shape[-1]), initializer=rows)
        self.bias = (self.add_weight(name="bias", shape=(self.n_targets,), initializer=keras.initializers.Constant(0.1))
                     if self.has_bias else None)
        if self.pooling == "attention":
            self.query = self.add_weight(name="query", shape=(input_shape[-1],), initializer="zeros")

    def pool(self, hidden, tokens):
        """The user representation [B, C] from the last block's output [B, T, C] over the positions
        whose token is not padding."""
        real = ops.cast(tokens != PAD, "float32")
        if self.pooling == "mean":
            weights = real / ops.maximum(ops.sum(real, axis=1, keepdims=True), 1.0)
        else:
            logits = ops.matmul(ops.cast(hidden, "float32"), self.query)
            weights = ops.softmax(ops.where(real > 0, logits, -1e9), axis=1) * real
        return ops.sum(ops.expand_dims(ops.cast(weights, hidden.dtype), -1) * hidden, axis=1)

    def biases(self, zeros=True):
        """The per-target bias; for a head without one, zeros (or None if not `zeros`)."""
        if self.has_bias:
            return self.bias
        return ops.zeros((self.n_targets,)) if zeros else None

    def call(self, user):
        logits = ops.matmul(user, ops.transpose(ops.cast(self.table, user.dtype)))
        return logits + ops.cast(self.bias, user.dtype) if self.has_bias else logits

    def score(self, user):
        """float32 scores of every target for ranking, whatever the compute dtype (bfloat16 ties)."""
        scores = ops.matmul(ops.cast(user, "float32"), ops.transpose(self.table))
        return scores + self.bias if self.has_bias else scores

    def penalty(self):
        return l2_penalty(self.l2, self.table)

    def get_config(self):
        return {**super().get_config(), "n_targets": self.n_targets, "kind": self.kind, "l2": self.l2,
                "bias": self.has_bias, "pooling": self.pooling}


def receptive_field(kernel_size, dilations):
    """How many trailing inputs the last position sees: 1 + (k - 1)(d + 2d) over the blocks."""
    return 1 + sum((kernel_size - 1) * 3 * d for d in dilations)


class ConureModel(keras.Model):
    """One NextItNet backbone plus one head per task (task 1 = next item, later tasks = TargetHead).

    `task_loss` and `task_scores` take the task and ownership phase explicitly, so a compiled
    function always traces the weights it means to use. Batches are dicts of arrays (losses.py).
    """

    def __init__(self, vocab_size, channels=256, dilations=(1, 4, 1, 4, 1, 4, 1, 4), kernel_size=3,
                 shared_embedding=False, **kwargs):
        super().__init__(**kwargs)
        self.backbone = NextItNet(vocab_size, channels, dilations, kernel_size, shared_embedding, name="backbone")
        self.backbone.build((None, None))
        self.heads = {}  # task number (as str) -> head
        self.patches = {}  # task number (as str) -> PeterRec patches, one per conv
        self.deltas = {}  # task number (as str) -> its ItemDelta (docs/extension.md)
        self.gates = {}  # task number (as str) -> its TaskGate (HAT, TERACON)
        self.relation = None  # TERACON's RelationGate, once the model holds two gated tasks
        self.smax = None  # the gates' s at inference
        self.gate_position = "conv"  # where the gates sit in each block (gates.POSITIONS)
        self.softmax_chunk = 0  # full softmax over item chunks of this size when a head is larger
        self.sampled_sums = "concat"  # how T1's sampled softmax sums its logits (losses.SAMPLED_SUMS)

    def add_head(self, task, head):
        head.build((None, self.backbone.channels))
        self.heads[str(task)] = head

    def head(self, task):
        if str(task) not in self.heads:
            raise ValueError(f"task {task} has no head (model has {sorted(self.heads)})")
        return self.heads[str(task)]

    def add_patches(self, task, bottleneck):
        """PeterRec: a fresh model patch after every conv, used whenever `task` runs."""
        patches = [ModelPatch(bottleneck, name=f"patch_t{task}_{i}") for i in range(len(self.backbone.convs))]
        for patch in patches:
            patch.build((None, None, self.backbone.channels))
        self.patches[str(task)] = patches

    def add_delta(self, task, rank):
        """A fresh low-rank addition to the item embedding, read whenever `task` runs."""
        delta = ItemDelta(self.backbone.vocab_size, rank, name=f"delta_t{task}")
        delta.build((None, self.backbone.channels))
        self.deltas[str(task)] = delta

    def add_gate(self, task, method):
        """HAT's or TERACON's gate embedding for `task`, freshly initialised."""
        gate = task_gates.TaskGate(len(self.backbone.convs), self.backbone.channels, method, name=f"gate_t{task}")
        gate.build()
        self.gates[str(task)] = gate
        self.gate_position = task_gates.POSITIONS[method]

    def add_relation(self):
        """TERACON: relation-aware gates over every gated task, freshly initialised."""
        self.relation = task_gates.RelationGate(len(self.gates), len(self.backbone.convs),
                                                name=f"relation_{len(self.gates)}_tasks")
        self.relation.build()

    def task_gates(self, task, s):
        """`task`'s gates on the conv outputs at `s` ([convs, channels]), or None if it has none."""
        if str(task) not in self.gates:
            return None
        if self.relation is None:
            return self.gates[str(task)].plain(s)
        return self.relation.gate(task, {int(n): gate.embedding for n, gate in self.gates.items()}, s)

    def _use(self, task, phase):
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
        for layer in (*self.backbone.convs, self.backbone):
            layer.task, layer.phase = task, phase

    def set_trainable(self, task, shared=False, convs=True, patches=False, every_task=False, embedding=None):
        """Trainable: `task`'s head, gate and item delta, plus the conv kernels, LayerNorms (`shared`),
        item embedding (`embedding`; None: with `shared`) and `task`'s model patches as asked. Every
        other task's head, gate, delta and patches are frozen, unless `every_task` (TERACON: every
        head and gate, and the relation gates)."""
        for layer in self.backbone.shared_layers:
            layer.trainable = shared
        self.backbone.embedding.trainable = shared if embedding is None else embedding
        for conv in self.backbone.convs:
            conv.trainable = convs
        for number, delta in self.deltas.items():
            delta.trainable = number == str(task)
        for number, layers in self.patches.items():
            for patch in layers:
                patch.trainable = patches and number == str(task)
        for layers in (self.heads, self.gates):
            for number, layer in layers.items():
                layer.trainable = every_task or number == str(task)
        if self.relation is not None:
            self.relation.trainable = every_task

    def call(self, tokens):
        return self.backbone(tokens)

    @property
    def receptive_field(self):
        """How many trailing inputs the last position sees (the module's receptive_field)."""
        return receptive_field(self.backbone.kernel_size, self.backbone.dilations)

    def hidden(self, tokens, task, phase, s=None):
        """The last block's output [B, T, C] as `task` sees it: the conv weights of `phase`, the
        task's patches and its gates at `s` (default: smax, as at inference)."""
        self._use(task, phase)
        return self.backbone(tokens, patches=self.patches.get(str(task)),
                             gates=self.task_gates(task, self.smax if s is None else s),
                             gate_position=self.gate_position, delta=self.deltas.get(str(task)))

    def user(self, tokens, task, phase, s=None):
        """The representation tasks 2+ and every ranking read: at the last position, computed over
        the receptive field only (the same numbers as the whole sequence, for a fraction of the
        work: 61 of 101 tokens with dilations 1, 4, 1, 4), or, for a head that pools, over every
        non-padding position."""
        head = self.heads.get(str(task))
        if isinstance(head, TargetHead) and head.pooling != "last":
            return head.pool(self.hidden(tokens, task, phase, s), tokens)
        return self.hidden(tokens[:, -self.receptive_field:], task, phase, s)[:, -1, :]

    def task_loss(self, batch, task, phase):
        """Training loss of `task` on a batch, with the conv weights of `phase` (and gates at the
        batch's annealed `s`, where the model has gates)."""
        head, s = self.head(task), batch.get("s")
        if task == 1:
            hidden = self.hidden(batch["tokens"], task, phase, s)
            return losses.next_item_loss(hidden, batch, head.weight, head.bias, self.softmax_chunk,
                                         self.sampled_sums) + head.penalty()
        user = self.user(batch["tokens"], task, phase, s)
        if "dropout" in batch:  # the task's dropout on its representation, drawn on the host
            user = user * ops.cast(batch["dropout"], user.dtype)
        loss = losses.target_loss(user, batch, head.table, head.kind, self.softmax_chunk, head.biases(zeros=False))
        return loss + head.penalty()

    def task_scores(self, tokens, task, phase="infer"):
        """Scores of every target of `task` at the last position: [B, n_targets]."""
        return self.head(task).score(self.user(tokens, task, phase))

    def task_ranks(self, tokens, truth, task, phase="infer", chunk=65536, excluded=(), k=5):
        """Ranking without the [B, n_targets] score matrix: item chunks of `chunk` columns, a count
        of targets scoring above the true one (the true column itself and `excluded` ids left out)
        and a running top-k. A truth among `excluded` ranks last (metrics.ranks_of). Returns
        (ranks [B], top-k ids [B, k], true scores [B])."""
        user = ops.cast(self.user(tokens, task, phase), "float32")
        head = self.head(task)
        weight, bias = (head.weight, head.bias) if task == 1 else (head.table, head.biases())
        n_targets, channels = weight.shape
        true_score = ops.sum(user * ops.take(weight, truth, axis=0), axis=1) + ops.take(bias, truth)
        weight, bias, n_chunks = losses.pad_to_chunks(weight, bias, chunk)
        excluded = ops.convert_to_tensor(list(excluded) or [-1], dtype="int32")

        def scan_chunk(i, carry):
            higher, top_scores, top_ids = carry
            ids = i * chunk + ops.arange(chunk, dtype="int32")
            logits = ops.matmul(user, ops.transpose(ops.slice(weight, [i * chunk, 0], [chunk, channels])))
            logits = logits + ops.slice(bias, [i * chunk], [chunk])
            invalid = ((ops.expand_dims(ids, 0) == ops.expand_dims(truth, 1)) | (ids >= n_targets)
                       | ops.any(ops.expand_dims(ids, 1) == ops.expand_dims(excluded, 0), axis=1))
            higher = higher + ops.sum(ops.cast((logits > ops.expand_dims(true_score, 1)) & ~invalid, "int32"), axis=1)
            logits = ops.where(invalid & (ops.expand_dims(ids, 0) != ops.expand_dims(truth, 1)), -float("inf"), logits)
            scores = ops.concatenate([top_scores, logits], axis=1)
            candidates = ops.concatenate([top_ids, ops.broadcast_to(ids, logits.shape)], axis=1)
            top_scores, where = ops.top_k(scores, k)
            return higher, top_scores, ops.take_along_axis(candidates, where, axis=1)

        batch = ops.shape(user)[0]
        start = (ops.zeros((batch,), "int32"), ops.full((batch, k), -float("inf")), ops.zeros((batch, k), "int32"))
        higher, _, top_ids = ops.fori_loop(0, n_chunks, scan_chunk, start)
        unrankable = ops.any(ops.expand_dims(truth, 1) == ops.expand_dims(excluded, 0), axis=1)
        return ops.where(unrankable, n_targets, higher), top_ids, true_score
