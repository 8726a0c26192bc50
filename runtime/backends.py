"""Inference engines behind one small interface, looked up by name in ``BACKENDS``.

Each backend takes preprocessed uint8 RGB pixels (N, H, W, 3), converts them to the
input tensor's dtype through its quantization parameters, runs the model and returns
every output as float32 (dequantized). Engines are imported lazily, inside the
factories: importing this module costs nothing and never pulls in TensorFlow. Which ONNX
Runtime providers a session gets (aliases, CPU fallback, GPU preload) is ``runtime._providers``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime._providers import PROVIDERS, preload_gpu_libraries, resolve_providers, warn_dropped
from runtime._tensors import InputConverter, TensorInfo, dequantizer
from runtime.contract import CONTRACT_KEY, read_tflite_metadata
from runtime.errors import ModelError, UserError
from runtime.modelfile import (
    MAX_MODEL_BYTES,
    MAX_THREADS,
    check_threads,
    default_threads,
    read_model,
    sniff_format,
    verify_digest,
)
from runtime.quiet import native_output_captured

log = logging.getLogger(__name__)

FORMATS = ("tflite", "onnx")
SUFFIXES = tuple(f".{f}" for f in FORMATS)  # how a model file's name ends


@dataclass
class Backend:
    """A loaded model in one engine; ``run`` maps uint8 pixels to float32 outputs."""

    name: str
    provider: str
    path: Path
    input: TensorInfo
    outputs: list[TensorInfo]
    metadata: dict[str, bytes] = field(default_factory=dict)
    supports_batch: bool = False
    threads: int | None = None
    sealed: bool = False  # the file carried an edgeloc digest and it matched

    def _failed(self, err: BaseException) -> ModelError:
        """An engine error at run time, as the model's fault (never the image's)."""
        first = _shorten(str(err).strip().splitlines()[0]) if str(err).strip() else repr(err)
        return ModelError(
            f"model {self.path} failed at run time in {self.name} ({first}); the file is "
            "damaged or was exported for another engine: re-export it"
        )

    def run(self, pixels: np.ndarray) -> list[np.ndarray]:
        """Run one batch of (N, H, W, 3) uint8 pixels; returns every output as float32."""
        raise NotImplementedError

    def raw(self) -> Any:
        """The engine object itself (interpreter or session), for bare timing."""
        raise NotImplementedError


def _shorten(text: str, limit: int = 260) -> str:
    """Engine messages put the cause at the end: keep the head and the tail."""
    return text if len(text) <= limit else f"{text[:110]} ... {text[-(limit - 115):]}"


# --- TFLite -------------------------------------------------------------------------------


class TFLiteBackend(Backend):
    """A TFLite interpreter (ai_edge_litert, tflite_runtime or tf.lite)."""

    def __init__(
        self, interpreter: Any, name: str, threads: int, metadata: dict[str, bytes], path: Path
    ):
        try:
            with native_output_captured():  # LiteRT announces its XNNPACK delegate on stderr
                interpreter.allocate_tensors()
        except (RuntimeError, ValueError) as err:  # a damaged or hand-edited graph
            first = str(err).strip().splitlines()[0][:200]
            raise UserError(
                f"{path} cannot be prepared by {name} (tensor allocation failed: {first}); "
                "the file is damaged or not an edgeloc model: re-export it"
            ) from None
        self._it = interpreter
        inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
        names_in, names_out = _signature_names(interpreter)
        if len(inputs) != 1:
            raise UserError(
                f"{path} has {len(inputs)} inputs; an edgeloc localizer has one image input"
            )
        info = [_tflite_info(d, names_out.get(d["index"])) for d in outputs]
        super().__init__(
            name=name,
            provider="CPU",
            path=path,
            input=_tflite_info(inputs[0], names_in.get(inputs[0]["index"])),
            outputs=info,
            metadata=metadata,
            threads=threads,
        )
        self._convert = InputConverter(self.input)
        self._in_index = self.input.index
        self._out = [(o.index, dequantizer(o)) for o in self.outputs]

    def run(self, pixels: np.ndarray) -> list[np.ndarray]:
        it = self._it
        if pixels.shape[0] != 1:  # the interpreter is allocated for batch 1
            rows = [self.run(pixels[i : i + 1]) for i in range(pixels.shape[0])]
            return [np.concatenate(parts) for parts in zip(*rows)]
        try:
            it.set_tensor(self._in_index, self._convert(pixels))
            it.invoke()
        except (RuntimeError, ValueError) as err:  # the interpreter's own error types
            raise self._failed(err) from None
        return [to_float(it.get_tensor(i)) for i, to_float in self._out]

    def raw(self) -> Any:
        return self._it


def _tflite_info(d: dict, signature_name: str | None) -> TensorInfo:
    scale, zero = d.get("quantization", (0.0, 0))
    return TensorInfo(
        name=signature_name or d["name"],
        shape=tuple(int(s) for s in d["shape"]),
        dtype=np.dtype(d["dtype"]),
        quant=(float(scale), int(zero)),
        index=d["index"],
    )


def _signature_names(interpreter: Any) -> tuple[dict[int, str], dict[int, str]]:
    """Tensor index -> signature name ("image", "box", "score"): converters rename tensors."""
    try:
        runner = interpreter.get_signature_runner()
        ins = {d["index"]: n for n, d in runner.get_input_details().items()}
        outs = {d["index"]: n for n, d in runner.get_output_details().items()}
        return ins, outs
    except Exception:  # no signature (older converters) or an old interpreter API
        return {}, {}


def _tflite_factory(interpreter_class: Callable[[], Any]) -> Callable[..., Backend]:
    def make(path: Path, data: bytes, threads: int, providers: Any, name: str) -> Backend:
        if providers:
            warnings.warn(
                f"providers={providers!r} applies to ONNX Runtime only; ignored for TFLite",
                stacklevel=4,
            )
        interpreter_cls = interpreter_class()
        metadata = read_tflite_metadata(data)
        try:
            it = interpreter_cls(model_content=data, num_threads=threads)
        except ValueError as err:  # the flatbuffer verifier rejects broken files
            raise UserError(f"{path} is not a valid TFLite model ({err}); re-export it") from None
        except RuntimeError as err:  # e.g. an op this interpreter build does not have
            raise UserError(f"{path} cannot run in {name} ({err})") from None
        except SystemError as err:  # a C extension built for another NumPy ABI
            hint = " (tflite-runtime 2.14 is built for NumPy 1.x: pip install 'numpy<2')"
            raise UserError(
                f"{name} could not create an interpreter ({err})"
                + (hint if name == "tflite_runtime" else "")
            ) from None
        return TFLiteBackend(it, name, threads, metadata, path)

    return make


def _module_interpreter(module: str) -> Callable[[], Any]:
    return lambda: importlib.import_module(module).Interpreter


def _tf_lite_interpreter() -> Any:
    import tensorflow as tf  # last resort only: heavy and deprecated

    return tf.lite.Interpreter


# --- ONNX Runtime ---------------------------------------------------------------------------

_ONNX_DTYPES = {
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
}


class OnnxBackend(Backend):
    """An ONNX Runtime inference session."""

    def __init__(self, session: Any, path: Path, errors: tuple[type[BaseException], ...]):
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1:
            raise UserError(
                f"{path} has {len(inputs)} inputs; an edgeloc localizer has one image input"
            )
        what = "metadata"  # names and metadata are decoded only when read
        try:
            meta = session.get_modelmeta().custom_metadata_map
            what = "a tensor name"
            info_in = _onnx_info(inputs[0], path)
            info_out = [_onnx_info(o, path) for o in outputs]
        except UnicodeDecodeError as err:  # bytes that are not UTF-8
            raise UserError(
                f"{path} has {what} that is not UTF-8 text ({err.reason} at byte "
                f"{err.start}); the file is damaged: re-export it"
            ) from None
        super().__init__(
            name="onnxruntime",
            provider=session.get_providers()[0],
            path=path,
            input=info_in,
            outputs=info_out,
            metadata={k: v.encode() for k, v in meta.items()},
            supports_batch=not isinstance(inputs[0].shape[0], int) or inputs[0].shape[0] != 1,
        )
        self._session = session
        self._errors = errors
        self._convert = InputConverter(self.input)
        self._in_name = self.input.name
        self._out_names = [o.name for o in self.outputs]
        self._to_float = [dequantizer(o) for o in self.outputs]

    def run(self, pixels: np.ndarray) -> list[np.ndarray]:
        if pixels.shape[0] != 1 and not self.supports_batch:
            rows = [self.run(pixels[i : i + 1]) for i in range(pixels.shape[0])]
            return [np.concatenate(parts) for parts in zip(*rows)]
        try:
            out = self._session.run(self._out_names, {self._in_name: self._convert(pixels)})
        except self._errors as err:
            raise self._failed(err) from None
        return [to_float(o) for to_float, o in zip(self._to_float, out)]

    def raw(self) -> Any:
        return self._session


def _onnx_info(arg: Any, path: Path) -> TensorInfo:
    shape = tuple(s if isinstance(s, int) else -1 for s in arg.shape)
    dtype = _ONNX_DTYPES.get(arg.type)
    if dtype is None:
        raise UserError(f"{path}: tensor {arg.name!r} has unsupported type {arg.type}")
    return TensorInfo(name=arg.name, shape=shape, dtype=np.dtype(dtype), index=arg.name)


def _onnx_factory(path: Path, data: bytes, threads: int, providers: Any, name: str) -> Backend:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 4  # fatal only: errors come back as exceptions, named by us
    chosen = resolve_providers(providers, ort.get_available_providers())
    preload_gpu_libraries(ort, chosen)
    banner = io.StringIO()
    try:
        # A session that fails to build is retried on the CPU after a banner that ONNX
        # Runtime prints (Python's print) on stdout, where infer writes its JSON lines.
        with contextlib.redirect_stdout(banner):
            session = ort.InferenceSession(data, sess_options=opts, providers=chosen)
    except Exception as err:  # onnxruntime raises its own InvalidProtobuf, Fail, ... types
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise UserError(f"{path} is not a loadable ONNX model ({first}); re-export it") from None
    finally:
        if banner.getvalue().strip():
            log.debug("onnxruntime printed:\n%s", banner.getvalue().strip())
    warn_dropped(chosen, session.get_providers())
    return OnnxBackend(session, path, _onnx_errors())


def _onnx_errors() -> tuple[type[BaseException], ...]:
    """ONNX Runtime's own exception types (plain ``Exception`` subclasses) and RuntimeError."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "RuntimeException", "InvalidArgument", "InvalidGraph", "EPFail")
    return (RuntimeError, *(getattr(state, n) for n in names if hasattr(state, n)))


# --- registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendEntry:
    """A registry entry: file format it reads, module that must import, pip package, factory."""

    format: str
    module: str
    package: str
    factory: Callable[..., Backend]


BACKENDS: dict[str, BackendEntry] = {
    "ai_edge_litert": BackendEntry(
        "tflite",
        "ai_edge_litert.interpreter",
        "ai-edge-litert",
        _tflite_factory(_module_interpreter("ai_edge_litert.interpreter")),
    ),
    "tflite_runtime": BackendEntry(
        "tflite",
        "tflite_runtime.interpreter",
        "tflite-runtime",
        _tflite_factory(_module_interpreter("tflite_runtime.interpreter")),
    ),
    "tensorflow": BackendEntry(
        "tflite", "tensorflow", "tensorflow", _tflite_factory(_tf_lite_interpreter)
    ),
    "onnxruntime": BackendEntry("onnx", "onnxruntime", "onnxruntime", _onnx_factory),
}
ALIASES = {
    "auto": None,
    "tflite": "tflite",
    "litert": "ai_edge_litert",
    "onnx": "onnx",
    "ort": "onnxruntime",
}


def installed(name: str) -> bool:
    """Whether a backend's engine imports here (imports it: call only when about to use it)."""
    try:
        importlib.import_module(BACKENDS[name].module)
        return True
    except Exception:  # ImportError, or a broken install raising anything else
        return False


def format_of(backend: str | None) -> str | None:
    """The model format a ``--backend`` name implies (``tflite``/``onnx``), or None for
    ``auto`` and for a name that is no backend (``open_backend`` refuses that one)."""
    key = ALIASES.get(backend, backend) if backend is not None else None
    if key in BACKENDS:
        return BACKENDS[key].format
    return key if key in FORMATS else None


def open_backend(
    path: str | Path,
    backend: str = "auto",
    threads: int | None = None,
    providers: Any = None,
    *,
    verify: bool = True,
) -> Backend:
    """Load ``path`` in the named backend, or the first installed one for its format.

    ``verify`` checks the digest edgeloc embeds in the file (see ``runtime.integrity``).
    """
    path = Path(path)
    threads = check_threads(threads)
    fmt, data = sniff_format(path)
    key = ALIASES.get(backend, backend) if isinstance(backend, str | None) else repr(backend)
    if key is not None and key not in BACKENDS and key not in FORMATS:
        valid = ", ".join([*ALIASES, *BACKENDS])
        raise UserError(f"unknown backend {backend!r}; valid: {valid}")
    if key in BACKENDS:
        if BACKENDS[key].format != fmt:
            raise UserError(
                f"backend {key} runs {BACKENDS[key].format} models but {path} is {fmt}; "
                "leave --backend out (auto picks by format) or pass a "
                f".{BACKENDS[key].format} model"
            )
        candidates = [key]
    else:
        if key in FORMATS and key != fmt:
            raise UserError(
                f"backend {backend!r} was asked for but {path} is a {fmt} model; leave "
                f"--backend out (auto picks by format) or pass a .{key} model"
            )
        candidates = [n for n, e in BACKENDS.items() if e.format == fmt]
    sealed = verify_digest(path, data) if verify else False
    for name in candidates:
        if installed(name):
            log.debug("loading %s with %s (%d threads)", path, name, threads)
            engine = BACKENDS[name].factory(path, data, threads, providers, name)
            engine.sealed = sealed
            return engine
    packages = " or ".join(BACKENDS[n].package for n in candidates if n != "tensorflow")
    raise UserError(f"no engine for {fmt} models is installed; pip install {packages}")


__all__ = ["BACKENDS", "CONTRACT_KEY", "MAX_MODEL_BYTES", "MAX_THREADS", "PROVIDERS", "SUFFIXES",
           "Backend", "TensorInfo", "check_threads", "default_threads", "format_of", "open_backend",
           "read_model", "resolve_providers", "sniff_format"]
