"""Warm starts: begin from another run's weights, optionally with the backbone frozen a while.

``--init RUN`` copies every weight of a run (or ``.keras`` file) of the same architecture
into the new model. Only the score layer may differ (another label set): it keeps its
fresh initialization. A model pretrained on a synthetic source or a larger related
dataset can so be fine-tuned on a small one; ``--freeze-backbone N`` keeps the backbone
fixed for the first N epochs, so the head adapts to the new labels before the features move.
"""

from __future__ import annotations

import logging
from typing import Any

import keras

from runtime.contract import SCORE_OUTPUT

log = logging.getLogger(__name__)

# Fields of ModelSpec that define the architecture (labels may differ; weights are replaced).
ARCHITECTURE = ("backbone", "image_size", "alpha", "reduce_filters", "vectorizer", "head_units",
                "box_format")


def warm_start(model: keras.Model, spec: Any, init: str) -> list[str]:
    """Copy the weights of run ``init`` into ``model`` (built from ``spec``); returns notes.

    Raises ValueError naming the differences when ``init`` is another architecture.
    """
    from train.config import load_run

    try:
        source, config = load_run(init)
    except FileNotFoundError as err:
        raise ValueError(f"--init: {err}") from None
    theirs = config.get("model", {})
    diffs = [f"{k} {theirs[k]!r} there, {getattr(spec, k)!r} here" for k in ARCHITECTURE
             if k in theirs and theirs[k] != getattr(spec, k)]
    mine, other = model.weights, source.weights
    if not diffs and len(mine) != len(other):
        diffs = [f"{len(other)} weight tensors there, {len(mine)} here"]
    if not diffs:
        diffs = [f"{w.path} {tuple(o.shape)} there, {tuple(w.shape)} here"
                 for w, o in zip(mine, other)
                 if tuple(w.shape) != tuple(o.shape) and not _is_score(w)]
    if diffs:
        raise ValueError(
            f"--init {init} is a different architecture ({'; '.join(diffs[:4])}); pass a run "
            "trained with the same --backbone, --alpha, --image-size, --vectorizer and "
            "--head-units, or drop --init")
    notes, copied = [], 0
    for w, o in zip(mine, other):
        if tuple(w.shape) == tuple(o.shape):
            w.assign(o.numpy())
            copied += 1
        else:
            notes.append(f"score layer re-initialized: {o.shape[-1]} labels there, {w.shape[-1]} here")
    notes = sorted(set(notes))
    log.info("warm start from %s: %d of %d weight tensors copied", init, copied, len(mine))
    return [f"warm start from {init}: {copied} of {len(mine)} weight tensors", *notes]


def _is_score(weight: Any) -> bool:
    return str(weight.path).split("/")[0] == SCORE_OUTPUT


def backbone_of(model: keras.Model) -> keras.Model:
    """The nested backbone model of a localizer built by ``train.model.build_model``."""
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) != 1:
        raise ValueError(f"expected one nested backbone model, found {len(nested)}")
    return nested[0]


class FreezeBackbone(keras.callbacks.Callback):
    """Keep the backbone's weights fixed (and its batch statistics frozen) before ``epochs``.

    The optimizer is built on all variables first, so unfreezing needs no new optimizer
    state; the train function is retraced when the trainable set changes.
    """

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = int(epochs)
        self._frozen: bool | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        if not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        frozen = epoch < self.epochs
        if frozen == self._frozen:
            return
        backbone_of(self.model).trainable = not frozen
        self.model.make_train_function(force=True)
        self._frozen = frozen
        log.info("epoch %d: backbone %s", epoch + 1, "frozen" if frozen else "trainable")


__all__ = ["ARCHITECTURE", "FreezeBackbone", "backbone_of", "warm_start"]
