"""Backend glue: one compiled training step and compiled inference, on TensorFlow or JAX.

Model and loss code is backend-neutral (keras.ops); only taking gradients differs: a
tf.GradientTape inside tf.function, or jax.value_and_grad over a stateless call under jax.jit.

Data parallelism uses the backends' own engines: tf.distribute.MirroredStrategy (every GPU, else
every logical CPU device; MultiWorkerMirroredStrategy when TF_CONFIG names several machines) or
keras.distribution.DataParallel on JAX (every device; every host's when KERAS_DISTRIBUTION_* name
several). Build the model and the TrainStep inside `data_parallel(True)`; each batch is split evenly
across the devices, and the arrays every device needs whole (SHARED_KEYS) are replicated. Every
worker builds the same global batch; `is_chief()` names the one that writes files.
`sharded_item_tables` splits the item tables' rows over devices instead (JAX ModelParallel).
"""
import contextlib
import functools
import os
import re
import sys
import tempfile
from pathlib import Path

# What TensorFlow prints while it loads and probes for CUDA, on every machine: not the user's business.
START_UP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog|oneDNN custom operations are on|Could not find cuda drivers"
    r"|failed call to cuInit|Unable to register cu(DNN|FFT|BLAS) factory|computation placer already registered"
    r"|TF-TRT Warning|This TensorFlow binary is optimized to use|rebuild TensorFlow with the appropriate compiler")


@contextlib.contextmanager
def start_up_noise_filtered():
    """Hold back the process's stderr (file descriptor 2, where TensorFlow's C++ logs go) while the
    block runs, then print every line of it but START_UP_NOISE. TF_CPP_MIN_LOG_LEVEL=0 shows all."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().decode(errors="replace").splitlines(keepends=True)
                    if not START_UP_NOISE.search(line)]
            sys.stderr.write("".join(kept))


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
with start_up_noise_filtered():
    import keras  # noqa: E402

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # noqa: E402

        tf.config.list_physical_devices("GPU")  # the CUDA probe, which logs its failure on a machine without one
import numpy as np  # noqa: E402


def backend():
    return keras.backend.backend()


def make_deterministic():
    """Same seed and inputs -> bit-identical results (TensorFlow needs op determinism switched on)."""
    if backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
        tf.get_logger().setLevel("ERROR")  # one trace per stage and task is expected, not a warning


SHARED_KEYS = ("sampled", "num_tries")  # batch entries that are not per example
_strategy = None  # the tf.distribute strategy while data_parallel(True) is active
_hosts_joined = []  # JAX: keras.distribution.initialize() runs once per process


@contextlib.contextmanager
def data_parallel(enabled):
    """Context for building a model and its TrainStep with data parallelism (no-op if not enabled)."""
    global _strategy
    if not enabled:
        yield
        return
    if backend() == "tensorflow":
        import tensorflow as tf

        if "TF_CONFIG" in os.environ:  # several machines: every worker runs the same command
            _strategy = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
            _strategy = tf.distribute.MirroredStrategy([d.name for d in devices])
        try:
            with _strategy.scope():
                yield
        finally:
            _strategy = None
    else:
        if "KERAS_DISTRIBUTION_JOB_ADDRESSES" in os.environ and not _hosts_joined:
            if "JAX_CPU_COLLECTIVES_IMPLEMENTATION" not in os.environ:  # CPU hosts need it (jax < 0.5: none)
                import jax

                jax.config.update("jax_cpu_collectives_implementation", "gloo")
            keras.distribution.initialize()  # several hosts, from KERAS_DISTRIBUTION_* variables
            _hosts_joined.append(True)
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        try:
            yield
        finally:
            keras.distribution.set_distribution(previous)


def sharded_item_tables(model_shards):
    """JAX: a keras.distribution.ModelParallel over every device that splits the rows of the item
    tables (embedding, T1 softmax weights and bias, T2+ target tables), and so their Adam moments,
    into `model_shards` parts; each batch is split over the remaining mesh axis. Set it with
    keras.distribution.set_distribution before building the model."""
    devices = keras.distribution.list_devices()
    if len(devices) % model_shards:
        raise ValueError(f"{len(devices)} devices do not split into {model_shards} model shards")
    mesh = keras.distribution.DeviceMesh((len(devices) // model_shards, model_shards), ["batch", "model"], devices)
    layout = keras.distribution.LayoutMap(mesh)
    layout[r".*embedding/embeddings"] = ("model", None)  # keys match whole variable paths
    layout[r".*head_t\d+/(weight|table)"] = ("model", None)
    layout[r".*head_t\d+/bias"] = ("model",)
    return keras.distribution.ModelParallel(layout_map=layout, batch_dim_name="batch")


def device_count():
    if _strategy is not None:
        return _strategy.num_replicas_in_sync
    distribution = keras.distribution.distribution() if backend() == "jax" else None
    return len(distribution.device_mesh.devices.ravel()) if distribution else 1


def is_chief():
    """True in the one process that writes checkpoints and results: worker 0 of a multi-worker run
    (TF_CONFIG or KERAS_DISTRIBUTION_*), and any single-process run."""
    if _strategy is not None:
        return _strategy.extended.should_checkpoint
    if backend() == "jax" and _hosts_joined:
        import jax

        return jax.process_index() == 0
    return True


def parallel_summary():
    """One line: how many devices and processes share each batch, and this process's part."""
    if _strategy is not None:
        resolver = getattr(_strategy, "cluster_resolver", None)
        workers = len(resolver.cluster_spec().as_dict().get("worker", [])) if resolver else 1
        where = f"worker {resolver.task_id} of {workers}" if resolver and workers > 1 else "one process"
        engine = "MultiWorkerMirroredStrategy" if resolver else "MirroredStrategy"
        return f"data parallel: {_strategy.num_replicas_in_sync} devices, {where} ({engine})"
    import jax

    return (f"data parallel: {device_count()} devices, process {jax.process_index()} of {jax.process_count()} "
            "(keras.distribution.DataParallel)")


def adam(learning_rate):
    """A fresh Adam as the release used it (TF1 defaults: beta1 0.9, beta2 0.999, eps 1e-8), no weight decay."""
    return keras.optimizers.Adam(learning_rate=learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8)


def optimizer(name, learning_rate):
    """A fresh "adam" (`adam`) or plain "sgd" (no momentum, no weight decay: HAT's released optimizer)."""
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate)
    return adam(learning_rate)


TABLE_UPDATES = ("dense", "sparse", "lazy")


class TrainStep:
    """`step(batch) -> loss`: one optimizer update of `variables` on `loss_fn(batch)`. `xla`
    compiles the TensorFlow step with XLA (JAX always does). `table_update`: see TableAdam.
    `update_scales` ({id(variable): array}) multiplies those variables' updates elementwise (HAT).
    `side_rules` ({id(variable): rule}) train those variables with their rule instead of the
    optimizer, and `clip_norm` clips the global gradient norm first (GradientRules; HAT's gates)."""

    def __init__(self, loss_fn, variables, all_variables, optimizer, xla=False, table_update="dense",
                 update_scales=None, side_rules=None, clip_norm=None):
        if table_update not in TABLE_UPDATES:
            raise ValueError(f"table_update={table_update!r}: one of {', '.join(TABLE_UPDATES)}")
        if table_update != "dense" and (backend() != "tensorflow" or _strategy is not None):
            raise ValueError(f"table_update={table_update!r} needs TensorFlow on one device (JAX gradients are dense)")
        side_rules = side_rules or {}
        optimized = [v for v in variables if id(v) not in side_rules]
        self.variables = optimized + [v for v in variables if id(v) in side_rules]  # the optimizer's first
        self.optimizer = optimizer
        optimizer.build(optimized)
        scales = {i: update_scales[id(v)] for i, v in enumerate(optimized) if id(v) in (update_scales or {})}
        rules = GradientRules([side_rules[id(v)] for v in self.variables[len(optimized):]], scales, clip_norm,
                              len(optimized))
        if backend() == "tensorflow":
            apply = TableAdam(optimized, optimizer, table_update, scales)
            self._step, self._split = tensorflow_step(loss_fn, self.variables, apply, xla, rules)
        elif backend() == "jax":
            frozen = [v for v in all_variables if all(v is not t for t in self.variables)]
            self._step, self._split = jax_step(loss_fn, self.variables, frozen, optimizer, scales, rules)
        else:
            raise RuntimeError(f"unsupported Keras backend {backend()!r}: use tensorflow or jax")

    def __call__(self, batch):
        return float(self._step(batch))

    def split(self):
        """(gradients, apply): the step's two halves compiled on their own, for timing them apart
        (tools/bench.py). `grads = gradients(batch)`, then `apply(grads)`; each returns when its work is done."""
        return self._split()


class GradientRules:
    """What happens between the gradients and the updates, in keras.ops: each side rule's own
    gradient (HAT's compensation), then a clip of the global norm to `clip_norm` (None: none),
    counting the gradients of scaled variables times their `scales` as HAT counts its masked ones;
    after the optimizer's update, each side variable's own update. The first `n_optimized`
    variables are the optimizer's, the rest the side rules' in order."""

    def __init__(self, side, scales, clip_norm, n_optimized):
        self.side, self.scales, self.clip_norm, self.n_optimized = side, scales, clip_norm, n_optimized

    def adjust(self, values, grads, batch):
        if not self.side and not self.clip_norm:
            return grads
        grads = list(grads)
        for j, rule in enumerate(self.side):
            i = self.n_optimized + j
            grads[i] = rule.gradient(values[i], grads[i], batch)
        if self.clip_norm:
            grads = [keras.ops.convert_to_tensor(g) for g in grads]
            norm = keras.ops.sqrt(sum(keras.ops.sum(keras.ops.square(g * self.scales[i] if i in self.scales else g))
                                      for i, g in enumerate(grads)))
            factor = keras.ops.minimum(1.0, self.clip_norm / (norm + 1e-6))  # torch's clip_grad_norm_
            grads = [g * factor for g in grads]
        return grads

    def side_values(self, values, grads, batch=None):
        """The side variables' new values."""
        first = self.n_optimized
        return [rule.apply(values[first + j], grads[first + j], batch or {}) for j, rule in enumerate(self.side)]


def tensorflow_step(loss_fn, variables, apply, xla, rules):
    """(step, split) on TensorFlow: a tf.GradientTape inside tf.function, replicated under the
    active tf.distribute strategy; `apply(grads)` updates the optimizer's variables, `rules` the rest."""
    import tensorflow as tf

    strategy = _strategy
    replicas = strategy.num_replicas_in_sync if strategy else 1
    n = rules.n_optimized

    def gradients(batch):
        with tf.GradientTape() as tape:
            loss = loss_fn(batch) / replicas  # gradients are summed over replicas
        return loss, rules.adjust([v.value for v in variables], tape.gradient(loss, variables), batch)

    def apply_all(grads, batch=None):
        side = rules.side_values([v.value for v in variables], grads, batch)
        apply(grads[:n])
        for variable, value in zip(variables[n:], side):
            variable.assign(value)

    def replica_step(batch):
        loss, grads = gradients(batch)
        apply_all(grads, batch)
        return loss

    def split():
        compiled_gradients = tf.function(gradients, jit_compile=xla)
        compiled_apply = tf.function(apply_all, jit_compile=xla)

        def apply_grads(grads):
            compiled_apply(grads)
            _wait_tensorflow(variables)

        return lambda batch: _wait_tensorflow(compiled_gradients(batch)[1]), apply_grads

    if strategy is None:
        return tf.function(replica_step, reduce_retracing=True, jit_compile=xla), split

    @tf.function(reduce_retracing=True)
    def distributed_step(per_replica_batch):
        losses = strategy.run(replica_step, args=(per_replica_batch,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    def step(batch):
        parts = split_batch(batch, replicas)
        return distributed_step(strategy.experimental_distribute_values_from_function(
            lambda context: parts[context.replica_id_in_sync_group]))

    return step, split


class TableAdam:
    """`apply(grads)` on TensorFlow: Adam's update, with a choice for the row gradients of embedding
    tables (IndexedSlices). "dense" (default) and "sparse" are TF1's Adam, which decays the moments
    and moves every row, touched or not; "dense" makes the gradient dense first, "sparse" adds the
    summed rows into the decayed moments (TF1's own order of operations). "lazy" updates only the
    rows the batch touches (TF1's LazyAdamOptimizer): a deviation from the release's algorithm.
    `scales` ({index in variables: array}) multiplies those variables' updates."""

    def __init__(self, variables, optimizer, table_update, scales=None):
        self.variables, self.optimizer, self.table_update = variables, optimizer, table_update
        self.scales = scales or {}

    def __call__(self, grads):
        import tensorflow as tf

        before = {i: tf.identity(self.variables[i].value) for i in self.scales}
        self.update(grads)
        for i, scale in self.scales.items():
            variable = self.variables[i]
            variable.assign(before[i] + scale * (variable.value - before[i]))

    def update(self, grads):
        import tensorflow as tf

        if self.table_update == "dense":
            # Keras's Adam mis-updates IndexedSlices that repeat an index (a token twice in a batch),
            # and they do not all-reduce correctly across replicas either.
            self.optimizer.apply([tf.convert_to_tensor(g) for g in grads], self.variables)
            return
        rows = [(g, v) for g, v in zip(grads, self.variables) if isinstance(g, tf.IndexedSlices)]
        dense = [(g, v) for g, v in zip(grads, self.variables) if not isinstance(g, tf.IndexedSlices)]
        step = tf.cast(self.optimizer.iterations + 1, "float32")  # before apply() counts this step
        for grad, variable in rows:
            self.adam_rows(summed_rows(grad), variable, step)
        if dense:
            self.optimizer.apply([g for g, _ in dense], [v for _, v in dense])
        else:
            self.optimizer.iterations.assign_add(1)

    def adam_rows(self, grad, variable, step):
        """Adam on a gradient with unique rows: TF1's AdamOptimizer._apply_sparse ("sparse") or
        LazyAdamOptimizer ("lazy")."""
        import tensorflow as tf

        opt = self.optimizer
        index = opt._get_variable_index(variable)  # Keras keeps Adam's moments by variable index
        m, v, w = opt._momentums[index].value, opt._velocities[index].value, variable.value
        b1, b2 = opt.beta_1, opt.beta_2
        alpha = tf.cast(opt.learning_rate, "float32") * tf.sqrt(1 - b2 ** step) / (1 - b1 ** step)
        rows, values = grad.indices, grad.values
        if self.table_update == "sparse":
            m.assign(m * b1)
            m.scatter_add(tf.IndexedSlices(values * (1 - b1), rows))
            v.assign(v * b2)
            v.scatter_add(tf.IndexedSlices(values * values * (1 - b2), rows))
            w.assign_sub(alpha * m / (tf.sqrt(v) + opt.epsilon))
            return
        m_rows = b1 * tf.gather(m, rows) + (1 - b1) * values
        v_rows = b2 * tf.gather(v, rows) + (1 - b2) * values * values
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        w.scatter_sub(tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + opt.epsilon), rows))


def jax_step(loss_fn, variables, frozen, optimizer, scales=None, rules=None):
    """(step, split) on JAX: jax.value_and_grad over a stateless call under jax.jit, the new parameters
    and Adam state taking the old ones' memory (donated). `scales` ({index in variables: array})
    multiply those updates; `rules` (GradientRules) adjust the gradients and update the rest."""
    import jax

    rules = rules or GradientRules([], scales or {}, None, len(variables))
    n = rules.n_optimized

    def loss_of(values, frozen_values, batch):
        mapping = list(zip(variables, values)) + list(zip(frozen, frozen_values))
        with keras.StatelessScope(state_mapping=mapping):
            return loss_fn(batch)

    def grads_of(values, frozen_values, batch):
        loss, grads = jax.value_and_grad(loss_of)(values, frozen_values, batch)
        return loss, rules.adjust(values, grads, batch)

    def apply(optimizer_values, grads, values, batch=None):
        new_values, optimizer_values = optimizer.stateless_apply(optimizer_values, grads[:n], values[:n])
        new_values = [old + scales[i] * (new - old) if i in (scales or {}) else new
                      for i, (old, new) in enumerate(zip(values, new_values))]
        return new_values + rules.side_values(values, grads, batch), optimizer_values

    @functools.partial(jax.jit, donate_argnums=(0, 2))
    def pure_step(values, frozen_values, optimizer_values, batch):
        loss, grads = grads_of(values, frozen_values, batch)
        values, optimizer_values = apply(optimizer_values, grads, values, batch)
        return loss, values, optimizer_values

    def current(of):
        return [v.value for v in of]

    def assign(values, optimizer_values):
        for variable, value in zip(variables, values):
            variable.assign(value)
        for variable, value in zip(optimizer.variables, optimizer_values):
            variable.assign(value)

    def step(batch):
        loss, values, optimizer_values = pure_step(current(variables), current(frozen), current(optimizer.variables),
                                                   shard_batch(batch))
        assign(values, optimizer_values)
        return loss

    def split():
        compiled_gradients = jax.jit(lambda *args: grads_of(*args)[1])
        # donated inputs in the outputs' order: else XLA copies the tables it still reads
        compiled_apply = jax.jit(lambda values, optimizer_values, grads: apply(optimizer_values, grads, values),
                                 donate_argnums=(0, 1))

        def gradients(batch):
            return jax.block_until_ready(compiled_gradients(current(variables), current(frozen), shard_batch(batch)))

        def apply_grads(grads):
            assign(*jax.block_until_ready(compiled_apply(current(variables), current(optimizer.variables), grads)))

        return gradients, apply_grads

    return step, split


def summed_rows(grad):
    """IndexedSlices with each row index once, its values summed (a token twice in a batch)."""
    import tensorflow as tf

    rows, position = tf.unique(grad.indices)
    return tf.IndexedSlices(tf.math.unsorted_segment_sum(grad.values, position, tf.shape(rows)[0]), rows,
                            grad.dense_shape)


def _wait_tensorflow(structure):
    """Return `structure` once every tensor in it is computed (reading one element of each waits
    for it on an asynchronous device)."""
    import tensorflow as tf

    for leaf in tf.nest.flatten(structure, expand_composites=True):
        tensor = leaf.value if isinstance(leaf, keras.Variable) else leaf
        if tf.size(tensor) > 0:
            tf.reshape(tensor, [-1])[0].numpy()
    return structure


def split_batch(batch, parts):
    """One batch dict per device: per-example arrays split evenly, SHARED_KEYS given whole."""
    size = len(batch["tokens"])
    if size % parts:
        raise ValueError(f"batch of {size} does not split evenly over {parts} devices")
    return [{k: v if k in SHARED_KEYS else v[i * size // parts:(i + 1) * size // parts] for k, v in batch.items()}
            for i in range(parts)]


def shard_batch(batch):
    """JAX under DataParallel: per-example arrays sharded along the batch, SHARED_KEYS replicated."""
    distribution = keras.distribution.distribution()
    if distribution is None:
        return batch
    mesh = distribution.device_mesh
    replicated = lambda x: keras.distribution.TensorLayout([None] * np.ndim(x), mesh)  # noqa: E731
    return {k: keras.distribution.distribute_tensor(
        v, replicated(v) if k in SHARED_KEYS else distribution.get_data_layout(np.shape(v))) for k, v in batch.items()}


def compiled(fn, variables):
    """`fn(*arrays)` compiled for the backend; it may read any of `variables`. Returns numpy
    (a structure of arrays if fn returns one)."""
    if backend() == "tensorflow":
        import tensorflow as tf

        graph_fn = tf.function(fn, reduce_retracing=True)
        return lambda *args: keras.tree.map_structure(keras.ops.convert_to_numpy, graph_fn(*args))
    import jax

    variables = list(variables)

    def pure(values, *args):
        with keras.StatelessScope(state_mapping=list(zip(variables, values))):
            return fn(*args)

    jitted = jax.jit(pure)
    return lambda *args: keras.tree.map_structure(np.asarray, jitted([v.value for v in variables], *args))


def numerics():
    """What, besides the inputs and weights, decides the bits a computation returns here: backend,
    library versions, device, and the CPU kernels' settings (oneDNN, intra-op threads)."""
    import platform

    settings = {"backend": backend(), "keras": keras.__version__, "numpy": np.__version__}
    if backend() == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        device = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else None
        settings.update({"tensorflow": tf.__version__, "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
                         "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads()
                         or int(os.environ.get("TF_NUM_INTRAOP_THREADS", 0)) or os.cpu_count()})
    else:
        import jax

        first = jax.devices()[0]
        device = first.device_kind if first.platform != "cpu" else None
        settings.update({"jax": jax.__version__, "xla_flags": os.environ.get("XLA_FLAGS", ""),
                         "cpu_threads": os.cpu_count()})
    settings["device"] = device or f"CPU {cpu_model()} ({platform.machine()}, {os.cpu_count()} cores)"
    return settings


def cpu_info():
    """The CPU as /proc/cpuinfo describes it: model name, feature flags, each core's MHz."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    fields = [(key.strip(), value.strip()) for key, _, value in (line.partition(":") for line in lines)]
    return {"model": next((v for k, v in fields if k == "model name"), "unknown"),
            "flags": set(next((v.split() for k, v in fields if k == "flags"), [])),
            "mhz": [float(v) for k, v in fields if k == "cpu MHz"]}


def cpu_model():
    """The CPU's model name and its widest vector extension (AVX-512 changes kernel choices)."""
    info = cpu_info()
    widest = next((f for f in ("avx512f", "avx2", "avx", "sse4_2") if f in info["flags"]), "")
    return f"{info['model']}, {widest}" if widest else info["model"]
