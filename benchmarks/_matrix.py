"""The matrix of a benchmark run: the eval set, the planned cells, measuring them, verdicts.

``benchmarks.latency.run`` calls these in order: ``build_evalset`` -> ``plan_specs`` ->
``measure`` (one process per cell, ``--repeat`` passes) -> ``share_costs`` -> ``finish``
(MACs, Pi estimates and the accuracy verdict against the float model of each family).
"""

from __future__ import annotations

import logging
import statistics
from pathlib import Path
from typing import Any, Callable

from benchmarks import _cost, _evalset, _plan
from benchmarks._execute import run_spec, skipped_cell, to_cell
from benchmarks._plan import Variant
from runtime.errors import UserError

log = logging.getLogger(__name__)
REF_ORDER = {"fp32": 0, "fp16": 1, "dynamic": 2, "int8": 3}


def _reads_folder(source: str) -> bool:
    """``data.catalog.reads_folder``; True where the training extras are not installed (the
    source then fails to open with its own message)."""
    try:
        from data.catalog import reads_folder
    except ImportError:
        return True
    return reads_folder(source)


def build_evalset(
    variants: list[Variant],
    *,
    source: str | None,
    data_dir: str | None,
    split: str | None,
    size: int,
    seed: int = 0,
) -> tuple[Any, str | None]:
    """(EvalSet or None, reason when accuracy is skipped). Explicit bad input raises UserError."""
    if data_dir and not source:  # a CSV/VOC folder, read whole by the lean reader
        if split and split != "all":
            source = _evalset.detect_format(Path(data_dir).expanduser())
            if source is None:
                raise UserError(f"--eval-dir {data_dir} is neither a CSV nor a VOC dataset")
        else:
            try:
                return _evalset.read_folder(data_dir, limit=size), None
            except (FileNotFoundError, ValueError) as err:
                raise UserError(str(err)) from None
    explicit = source is not None
    if source is None:
        config = next((v.run_config for v in variants if v.run_config), None)
        words = [str(v.name) for v in variants] + [
            w for v in variants for w in _plan.contract_labels(v.file)
        ]
        labels = " ".join(words)
        if config:
            labels += " " + " ".join(config.get("model", {}).get("labels", []))
        guess = _evalset.default_source(labels.split(), config)
        if guess is None:
            return None, "no eval set: pass --eval SOURCE or --eval-dir (a CSV or VOC folder)"
        source, data_dir = guess[0], data_dir or guess[1]
    if explicit and data_dir and not _reads_folder(source):
        raise UserError(f"--eval {source} is built in and reads no --eval-dir (got {data_dir}); "
                        "drop --eval-dir, or name the folder's format (csv, voc, yolo, coco) "
                        "in --eval")
    try:
        data = _evalset.from_source(
            source, data_dir=data_dir, split=split or "test", size=size, seed=seed
        )
        return data, None
    except ImportError as err:
        reason = (
            f"eval source {source!r} needs the training extras ({err}); on a lean install "
            "pass --eval-dir with a CSV or VOC folder"
        )
    except (FileNotFoundError, ValueError) as err:
        reason = f"eval source {source!r}: {err}"
    except Exception as err:  # noqa: BLE001  (a default source that cannot be built here)
        if explicit:
            raise
        reason = f"eval source {source!r} cannot be built here ({type(err).__name__}: {err})"
    if explicit:
        raise UserError(reason)
    return None, reason


def plan_specs(
    variants: list[Variant],
    *,
    threads: list[int],
    backends: set[str] | None,
    has_gpu: bool,
    common: dict[str, Any],
) -> list[tuple[Variant, dict[str, Any] | None, dict]]:
    """(variant, spec or None, skipped cell or {}) for every planned cell."""
    out: list[tuple[Variant, dict[str, Any] | None, dict]] = []
    for v in variants:
        combos = _plan.backends_for(v.format, backends)
        if not combos:
            out.append(
                (
                    v,
                    None,
                    skipped_cell(
                        v,
                        "",
                        backends and ",".join(sorted(backends)) or "-",
                        None,
                        "cpu",
                        f"no selected backend runs {v.format} models",
                    ),
                )
            )
        for runner, backend, provider, device in combos:
            reason = _plan.installed_reason(runner, backend, provider, device, has_gpu)
            if reason:
                out.append((v, None, skipped_cell(v, runner, backend, provider, device, reason)))
                continue
            for t in threads if device == "cpu" else [None]:
                spec = {
                    **common,
                    "runner": runner,
                    "variant": v.name,
                    "backend": backend,
                    "provider": provider,
                    "device": device,
                    "threads": t,
                    "file": str(v.file) if v.file else None,
                    "precision": v.precision,
                }
                out.append((v, spec, {}))
    return out


def family(name: str) -> str:
    """Variants of one model share a stem once precision words are removed (model_int8 -> model)."""
    stem = Path(name).stem.lower()
    words = {
        "int8",
        "uint8",
        "quant",
        "fp16",
        "float16",
        "f16",
        "dynamic",
        "dyn",
        "drq",
        "fp32",
        "float32",
        "float",
    }
    return "_".join(t for t in stem.replace("-", "_").split("_") if t not in words) or stem


def finish(cells: list[dict[str, Any]], costs: dict[str, Any], max_iou_drop: float) -> None:
    """Fill cost and Pi estimates, then mark cells that lost too much accuracy."""
    for cell in cells:
        cost = costs.get(cell["variant"])
        if cost:
            cell["params"], cell["macs"] = cost.get("params"), cost.get("macs")
        if cell["kind"] != "baseline" and cell.get("macs"):
            est = _cost.pi_estimates(cell["macs"], cell.get("precision"))
            cell["est_pi4_ms"], cell["est_pi5_ms"] = est["pi4"], est["pi5"]
    scored = [
        c
        for c in cells
        if c["kind"] == "model" and c["status"] == "ok" and c.get("mean_iou") is not None
    ]
    for fam in {family(c["variant"]) for c in scored}:
        members = [c for c in scored if family(c["variant"]) == fam]
        ref = min(
            members,
            key=lambda c: (c["format"] != "keras", REF_ORDER.get(c.get("precision") or "", 9)),
        )
        if ref["format"] != "keras" and ref.get("precision") != "fp32":
            continue  # no float model to judge against (e.g. a folder of int8 files only)
        for cell in members:
            cell["iou_drop"] = round(ref["mean_iou"] - cell["mean_iou"], 4)
            if cell["iou_drop"] > max_iou_drop:
                cell["status"] = "accuracy_failed"
                cell["reason"] = (
                    f"mean IoU {cell['mean_iou']:.3f} is {cell['iou_drop']:.3f} below "
                    f"{ref['variant']} ({ref['mean_iou']:.3f}); allowed drop {max_iou_drop}"
                )


def measure(
    planned: list, repeat: int, timeout: float, on_cell: Callable[[int, int, str], None] | None
) -> tuple[list, list, dict]:
    """Run every spec ``repeat`` times (whole passes, so drift hits all cells alike)."""
    results: list[list[dict[str, Any]]] = [[] for _ in planned]
    want_cost: set[str] = set()
    todo = sum(1 for _, spec, _ in planned if spec) * repeat
    done = 0
    for _ in range(repeat):
        for i, (variant, spec, _) in enumerate(planned):
            if spec is None:
                continue
            spec = {
                **spec,
                "want_cost": variant.kind != "baseline" and variant.name not in want_cost,
            }
            want_cost.add(variant.name)
            if on_cell:
                on_cell(
                    done, todo, f"{variant.name} / {spec['backend']} / {spec['threads'] or '-'} thr"
                )
            results[i].append(run_spec(spec, timeout))
            done += 1
    cells, raws = [], []
    for (variant, spec, skipped), reps in zip(planned, results, strict=True):
        if spec is None:
            cells.append(skipped)
            raws.append({})
            continue
        ok = [r for r in reps if r.get("latency_ms")]
        chosen = reps[0]
        if len(ok) > 1:  # the repeat whose median is the (lower) median of the medians
            p50s = [r["latency_ms"]["p50"] for r in ok]
            chosen = ok[p50s.index(statistics.median_low(p50s))]
        cell = to_cell(variant, spec, chosen)
        if len(ok) > 1:
            p50s = [r["latency_ms"]["p50"] for r in ok]
            cell["repeat_p50_ms"] = p50s
            spread = max(r["latency_ms"]["std"] for r in ok)
            if max(p50s) - min(p50s) > spread:
                cell["notes"].append(
                    f"repeat medians differ by {max(p50s) - min(p50s):.3g} ms, more than "
                    f"the spread (std {spread:.3g} ms): the machine was busy, rerun"
                )
        cells.append(cell)
        raws.append(next((r for r in reps if r.get("cost") or r.get("source_sha256")), chosen))
    return cells, raws, {}


def share_costs(cells: list[dict], raws: list[dict], costs: dict[str, Any]) -> None:
    """Variants exported from one Keras model (same source hash) share MACs when one lacks them."""
    by_sha: dict[str, Any] = {}
    for cell, raw in zip(cells, raws, strict=True):
        if raw.get("source_sha256") and costs.get(cell["variant"]):
            by_sha.setdefault(raw["source_sha256"], costs[cell["variant"]])
    for cell, raw in zip(cells, raws, strict=True):
        sha = raw.get("source_sha256")
        if sha in by_sha and not (costs.get(cell["variant"]) or {}).get("macs"):
            costs[cell["variant"]] = by_sha[sha]
