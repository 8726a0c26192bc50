"""Where a run trains: a tf.distribute strategy by name, who writes the run directory, and
mixed precision.

``--strategy`` (``STRATEGIES``):
    one          the default strategy: one device (the first GPU, else the CPU)
    mirrored     ``MirroredStrategy``: synchronous data parallelism over every GPU of this
                 machine (without a GPU: every logical CPU device, see ``split_cpu``)
    multiworker  ``MultiWorkerMirroredStrategy``: several machines, each told the cluster
                 and its own place in it by the standard ``TF_CONFIG`` variable
    auto         mirrored when this machine sees two or more GPUs, else one

``--batch-size`` is the *global* batch: N replicas each get batch/N images per step and
their gradients are summed, so the same command on 1, 2 or 8 GPUs takes the same steps
with the same learning rate and gives the same optimization (up to batch-norm statistics,
which each replica computes on its own share). The learning rate is never rescaled behind
the user's back; when you raise the global batch k times to keep more GPUs busy, raise
``--lr`` k times too (the linear scaling rule, Goyal et al. 2017, "Accurate, Large
Minibatch SGD") and add ``--warmup-steps`` (a few hundred) so the large rate does not
throw the freshly initialized weights off in the first steps.

Only the chief (``one``/``mirrored``: the one process; ``multiworker``: task ``chief``,
else ``worker`` 0) writes the run directory; the other workers run the same callbacks
into a private temporary directory that is deleted at the end, as the TensorFlow
multi-worker guide recommends (every worker must take part in the same saves).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable

log = logging.getLogger(__name__)

TF_CONFIG = "TF_CONFIG"
MIXED_POLICY = "mixed_float16"


def split_cpu(count: int) -> None:
    """Split the CPU into ``count`` logical devices, so ``mirrored`` can run without a GPU.

    Must run before TensorFlow initializes its devices (before the first op); tests and
    benchmarks call it at the top of a fresh process.
    """
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(int(count))])
    except RuntimeError as err:  # devices already initialized in this process
        raise RuntimeError(f"split_cpu({count}) must run before TensorFlow's first op ({err})"
                           ) from None


def gpu_count() -> int:
    """GPUs TensorFlow sees in this process (0 with tensorflow-cpu)."""
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def _one() -> Any:
    import tensorflow as tf

    return tf.distribute.get_strategy()  # the default strategy: no replication


def _mirrored() -> Any:
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) < 2:
        log.warning("--strategy mirrored over a single device (%s): nothing to mirror", devices[0])
    return tf.distribute.MirroredStrategy(devices=devices)


def _multiworker() -> Any:
    import tensorflow as tf

    cluster = read_tf_config()
    log.info("multiworker: %s %s of %s", cluster["task"]["type"], cluster["task"]["index"],
             {k: len(v) for k, v in cluster["cluster"].items()})
    _fix_keras_multiworker()
    return tf.distribute.MultiWorkerMirroredStrategy()


def _fix_keras_multiworker() -> None:
    """Work around keras-team/keras#20585 (open; Keras 3 up to at least 3.15): ``fit`` fails
    under MultiWorkerMirroredStrategy in two places, both reductions of values that are
    already the same on every worker.

    - Before training it averages the first batch over all workers to trace the model
      ("Attempt to convert a value (PerReplica ...)"): the trace needs shapes only, so
      it gets this worker's batch.
    - After every step it averages the logs "along axis 0", which scalars lack ("Invalid
      reduction dimension 0"): the logs are metric results whose variables are summed
      over all workers on every update, so this worker's value is the global one.
    """
    from keras import tree
    from keras.src.backend.tensorflow import trainer

    if getattr(trainer.reduce_per_replica, "_edgeloc", False):
        return
    original_reduce = trainer.reduce_per_replica

    def local(strategy: Any, values: Any) -> Any:
        return tree.map_structure(lambda v: strategy.experimental_local_results(v)[0]
                                  if trainer._is_per_replica_instance(v) else v, values)

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction == "auto" and trainer._collective_all_reduce_multi_worker(strategy):
            return local(strategy, values)
        return original_reduce(values, strategy, reduction)

    def maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> None:
        if iterator is not None and trainer._collective_all_reduce_multi_worker(self.distribute_strategy):
            for _, _, it in iterator:
                data_batch = local(self.distribute_strategy, next(it))
                break
            iterator = None
        original_build(self, iterator=iterator, data_batch=data_batch)

    original_build = trainer.TensorFlowTrainer._maybe_symbolic_build
    reduce_per_replica._edgeloc = True  # type: ignore[attr-defined]
    trainer.reduce_per_replica = reduce_per_replica
    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build


def _auto() -> Any:
    return _mirrored() if gpu_count() >= 2 else _one()


STRATEGIES: dict[str, Callable[[], Any]] = {
    "auto": _auto,
    "one": _one,
    "mirrored": _mirrored,
    "multiworker": _multiworker,
}


def make_strategy(name: str) -> Any:
    """The ``tf.distribute.Strategy`` registered as ``name``; call before any other TF op."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; valid: {', '.join(STRATEGIES)}")
    return STRATEGIES[name]()


def read_tf_config() -> dict[str, Any]:
    """The parsed ``TF_CONFIG``; ValueError with a worked example when missing or malformed."""
    example = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}\'')
    text = os.environ.get(TF_CONFIG, "").strip()
    if not text:
        raise ValueError(f"--strategy multiworker needs the {TF_CONFIG} variable on every "
                         f"machine, e.g. {example} (index 1 on the second); see README 'Scaling'")
    try:
        config = json.loads(text)
        task, cluster = config["task"], config["cluster"]
        workers = cluster[task["type"]]
        int(task["index"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise ValueError(f"{TF_CONFIG} is not a valid cluster description ({text[:120]}); "
                         f"expected e.g. {example}") from None
    if not 0 <= int(task["index"]) < len(workers):
        raise ValueError(f"{TF_CONFIG} task index {task['index']} is outside the "
                         f"{len(workers)} {task['type']} address(es)")
    return config


def is_chief(strategy: Any) -> bool:
    """Whether this process writes the run directory (the chief, or worker 0 without one)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not getattr(resolver, "task_type", None):
        return True  # one process: the default and mirrored strategies
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and int(resolver.task_id) == 0 and not has_chief


def uses_gpu(strategy: Any) -> bool:
    """Whether the strategy's replicas run on GPUs (the default strategy: a GPU is visible)."""
    try:
        devices = list(strategy.extended.worker_devices)
    except (RuntimeError, NotImplementedError):  # the default strategy places ops itself
        return gpu_count() > 0
    return any("GPU" in d.upper() for d in devices)


def resolve_mixed_precision(requested: bool | None, on_gpu: bool) -> bool:
    """``--mixed-precision`` as asked, or by default on where the replicas are GPUs.

    On CPU float16 is emulated and slower (no float16 matrix units), so it stays off unless
    asked for; on a GPU with tensor cores it roughly halves step time and activation memory.
    """
    return bool(on_gpu if requested is None else requested)


def set_precision(mixed: bool) -> None:
    """Set the global Keras dtype policy (``mixed_float16`` or ``float32``) for new layers."""
    import keras

    keras.mixed_precision.set_global_policy(MIXED_POLICY if mixed else "float32")


def float32_copy(model: Any) -> Any:
    """The same model with every layer in float32: what a mixed-precision run saves.

    Under ``mixed_float16`` variables are float32 already and only the compute dtype
    differs, so rebuilding the architecture with float32 policies and copying the weights
    is exact; exported files then keep the float32 contract whatever the run trained with.
    """
    if not any("mixed" in str(getattr(layer, "dtype_policy", "")) for layer in _layers(model)):
        return model
    config = _float32_config(model.get_config())
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def _layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out += _layers(layer)
    return out


def _float32_config(value: Any) -> Any:
    """A model config with every mixed dtype policy replaced by float32 (recursively)."""
    if isinstance(value, dict):
        if value.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
            name = str(value.get("config", {}).get("name", ""))
            if name.startswith("mixed_"):
                return {**value, "config": {**value["config"], "name": "float32"}}
        return {k: _float32_config(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_float32_config(v) for v in value]
    if isinstance(value, str) and value.startswith("mixed_"):
        return "float32"
    return value


__all__ = ["MIXED_POLICY", "STRATEGIES", "float32_copy", "gpu_count", "is_chief", "make_strategy",
           "read_tf_config", "resolve_mixed_precision", "set_precision", "split_cpu", "uses_gpu"]
