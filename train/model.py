"""Localizer model: backbone -> optional reduction conv -> vectorizer -> dense head.

The model takes raw RGB pixel values (0..255, shape (B, H, W, 3); uint8 arrays are fine)
and rescales them itself for its backbone, so every exported model takes raw pixels.
It returns two named outputs (see runtime.contract):
    box:   (B, 4) sigmoid, normalized, in the configured box format
    score: (B, K) softmax over labels, labels[0] == "none"
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import keras
import numpy as np
from keras import layers

from runtime.contract import BOX_OUTPUT, INPUT_NAME, SCORE_OUTPUT, check_box_format, from_xyxy

log = logging.getLogger(__name__)

# Pixel scaling per backbone family: (scale, offset, flip RGB->BGR).
_SCALING = {
    "tf": (1 / 127.5, -1.0, False),  # [-1, 1], MobileNet family
    "unit": (1 / 255.0, 0.0, False),  # [0, 1], our small CNN
    "caffe": (1.0, 0.0, True),  # BGR minus ImageNet means, ResNet50/VGG16
}
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
BN_MOMENTUM = 0.9  # from-scratch runs are short: moving statistics must keep up
INITIAL_BOX = (0.25, 0.25, 0.75, 0.75)  # x1, y1, x2, y2 the untrained box head predicts


@keras.saving.register_keras_serializable(package="edgeloc")
class PixelScale(layers.Layer):
    """Raw 0..255 RGB pixels -> the float range a backbone was trained on."""

    def __init__(self, mode: str = "tf", **kwargs):
        super().__init__(**kwargs)
        if mode not in _SCALING:
            raise ValueError(f"unknown pixel scaling {mode!r}; valid: {', '.join(_SCALING)}")
        self.mode = mode

    def call(self, x):
        scale, offset, flip = _SCALING[self.mode]
        x = keras.ops.cast(x, "float32")
        if flip:
            x = x[..., ::-1] - keras.ops.convert_to_tensor(_CAFFE_MEAN_BGR, "float32")
        return x * scale + offset

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def _small_cnn(shape: tuple[int, int, int], weights: str | None, alpha: float) -> keras.Model:
    """A from-scratch CNN for edge devices: 5 stride-2 blocks of separable convs."""
    if weights == "imagenet":
        raise ValueError("small_cnn has no ImageNet weights; use --weights none or a local file")
    inp = keras.Input(shape)
    x = inp
    widths = [max(8, int(w * alpha)) for w in (16, 32, 64, 128, 192)]
    x = layers.Conv2D(widths[0], 3, strides=2, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
    x = layers.ReLU(6.0)(x)  # (B, H/2, W/2, C)
    for w in widths[1:]:
        x = layers.SeparableConv2D(w, 3, strides=2, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
        x = layers.ReLU(6.0)(x)
        x = layers.SeparableConv2D(w, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
        x = layers.ReLU(6.0)(x)  # (B, H/32, W/32, C) after the last block
    model = keras.Model(inp, x, name="small_cnn")
    if weights:
        model.load_weights(weights)
    return model


def _app(factory: Callable[..., keras.Model], **fixed) -> Callable:
    def build(shape: tuple[int, int, int], weights: str | None, alpha: float) -> keras.Model:
        kwargs = dict(fixed)
        if "alpha" in kwargs:
            kwargs["alpha"] = alpha
        return factory(input_shape=shape, include_top=False, weights=weights, **kwargs)

    return build


@dataclass(frozen=True)
class Backbone:
    """A backbone entry: how to build it and how it wants its pixels scaled."""

    build: Callable[[tuple[int, int, int], str | None, float], keras.Model]
    scaling: str


BACKBONES: dict[str, Backbone] = {
    "mobilenet_v2": Backbone(_app(keras.applications.MobileNetV2, alpha=1.0), "tf"),
    "mobilenet_v3_small": Backbone(
        _app(keras.applications.MobileNetV3Small, alpha=1.0, include_preprocessing=False), "tf"
    ),
    "resnet50": Backbone(_app(keras.applications.ResNet50), "caffe"),
    "vgg16": Backbone(_app(keras.applications.VGG16), "caffe"),
    "small_cnn": Backbone(_small_cnn, "unit"),
}


def _attention_pool(x: keras.KerasTensor) -> keras.KerasTensor:
    """Spatial-softmax pooling with soft-argmax position; standard layers only (exportable)."""
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    logits = layers.Conv2D(1, 1, name="attention_logits")(x)  # (B, h, w, 1)
    weights = layers.Softmax(axis=1)(layers.Reshape((h * w,))(logits))  # (B, h*w), sums to 1
    cells = layers.Reshape((h * w, c))(x)  # (B, h*w, C)
    pooled = layers.Dot(axes=(1, 1))([weights, cells])  # (B, C) attention-weighted features
    # Expected cell centre under the weights: a fixed (h*w, 2) matrix of cell coordinates.
    gy, gx = np.meshgrid((np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w, indexing="ij")
    where = layers.Dense(2, use_bias=False, trainable=False, name="soft_argmax")
    position = where(weights)  # (B, 2) x, y in [0, 1]
    where.kernel.assign(np.stack([gx.ravel(), gy.ravel()], 1).astype("float32"))
    average = layers.GlobalAveragePooling2D()(x)  # (B, C) context
    return layers.Concatenate()([pooled, average, position])  # (B, 2C + 2)


VECTORIZERS: dict[str, Callable[[keras.KerasTensor], keras.KerasTensor]] = {
    "gap": lambda x: layers.GlobalAveragePooling2D()(x),
    "flatten": lambda x: layers.Flatten()(x),
    "attention": _attention_pool,
}


@dataclass
class ModelSpec:
    """Architecture of a localizer.

    Attributes:
        backbone: a key of ``BACKBONES``.
        image_size: square input side in pixels.
        labels: class names, ``labels[0] == "none"``.
        weights: ``imagenet``, ``none`` or a path to a backbone weights file.
        alpha: width multiplier (MobileNets, small_cnn).
        reduce_filters: filters of the extra 3x3 stride-2 conv after the backbone
            (the ResNet reference design uses 1024); 0 disables it.
        vectorizer: ``gap`` (global average pooling), ``flatten``, or ``attention``: a
            1x1 conv scores every cell, a spatial softmax turns the scores into weights,
            and the head gets the weighted features, the plain average and the weighted
            mean cell position (soft-argmax), so a small object is not averaged away.
        head_units: width of the hidden dense layer (0: none).
        dropout: dropout before the outputs.
        box_format: ``xyxy`` or ``xywh`` (reference design 1).
    """

    backbone: str = "mobilenet_v2"
    image_size: int = 160
    labels: tuple[str, ...] = ("none", "object")
    weights: str = "none"
    alpha: float = 1.0
    reduce_filters: int = 0
    vectorizer: str = "gap"
    head_units: int = 256
    dropout: float = 0.0
    box_format: str = "xyxy"


def resolve_weights(weights: str | None) -> str | None:
    """Map ``--weights`` to what keras.applications takes; fail fast on a bad path."""
    if weights is None or str(weights).lower() in ("none", ""):
        return None
    if str(weights).lower() == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ValueError(f"weights file {path} not found; pass --weights none, imagenet or a file path")
    return str(path)


def _build_backbone(spec: ModelSpec, weights: str | None) -> keras.Model:
    entry = BACKBONES[spec.backbone]
    shape = (spec.image_size, spec.image_size, 3)
    if weights != "imagenet":
        backbone = entry.build(shape, weights, spec.alpha)
        if weights is None:  # keras.applications use 0.999, far too slow for a short run
            for layer in backbone.layers:
                if isinstance(layer, layers.BatchNormalization):
                    layer.momentum = BN_MOMENTUM
        return backbone
    # ImageNet weights are downloaded once into ~/.keras/models; without a network
    # the download must fail quickly with advice, not hang.
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        return entry.build(shape, weights, spec.alpha)
    except ValueError:
        raise  # keras' own message about unsupported alpha/size combinations
    except Exception as err:  # urllib, socket or HTTP errors: all mean "no download"
        cache = Path(os.environ.get("KERAS_HOME", "~/.keras")).expanduser() / "models"
        raise RuntimeError(
            f"could not download ImageNet weights for {spec.backbone} ({type(err).__name__}: "
            f"{err}). Without internet access, pass --weights none to train from scratch, "
            f"or --weights PATH with a weights file (or copy it into {cache})."
        ) from None
    finally:
        socket.setdefaulttimeout(old)


def build_model(spec: ModelSpec) -> keras.Model:
    """Build an uncompiled localizer with outputs ``box`` and ``score``."""
    if spec.backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {spec.backbone!r}; valid: {', '.join(BACKBONES)}")
    if spec.vectorizer not in VECTORIZERS:
        raise ValueError(f"unknown vectorizer {spec.vectorizer!r}; valid: {', '.join(VECTORIZERS)}")
    check_box_format(spec.box_format)
    if len(spec.labels) < 2 or spec.labels[0] != "none":
        raise ValueError(f"labels must be 'none' followed by object classes, got {spec.labels}")

    backbone = _build_backbone(spec, resolve_weights(spec.weights))
    inp = keras.Input((spec.image_size, spec.image_size, 3), name=INPUT_NAME)  # raw 0..255
    x = PixelScale(BACKBONES[spec.backbone].scaling)(inp)
    x = backbone(x)  # (B, h, w, C)
    if spec.reduce_filters:
        x = layers.Conv2D(spec.reduce_filters, 3, strides=2, padding="same", activation="relu")(x)
    x = VECTORIZERS[spec.vectorizer](x)  # (B, D)
    if spec.head_units:
        x = layers.Dense(spec.head_units, activation="relu")(x)  # (B, head_units)
    if spec.dropout:
        x = layers.Dropout(spec.dropout)(x)
    # float32 even under a mixed_float16 policy (train.distribute): the sigmoid and softmax
    # run in full precision and the outputs keep the float32 contract.
    box_layer = layers.Dense(4, activation="sigmoid", name=BOX_OUTPUT, dtype="float32")
    box = box_layer(x)  # (B, 4) in [0, 1]
    score = layers.Dense(len(spec.labels), activation="softmax", name=SCORE_OUTPUT,
                         dtype="float32")(x)  # (B, K)
    # Start from a centred box of half the image side, not the zero-width box that
    # sigmoid(0) = 0.5 on all four numbers gives: IoU losses then have a gradient at once.
    start = from_xyxy(np.array(INITIAL_BOX), spec.box_format)
    box_layer.bias.assign(np.log(start / (1.0 - start)).astype("float32"))
    return keras.Model(inp, {BOX_OUTPUT: box, SCORE_OUTPUT: score}, name=f"edgeloc_{spec.backbone}")
