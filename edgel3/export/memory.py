"""Memory report of a model for a microcontroller: sizes, MACs, activations, budgets.

For a Keras model or an exported ``.tflite`` file, :func:`memory_report` gives

- the parameter count and the static size per precision (float32, float16,
  int8), dense and with a sparse encoding of the weight kernels (bitmap or CSR
  + non-zero values) for pruned models;
- multiply-accumulates per 1-s window (convs / dense layers, and the front end);
- the largest activation tensor (the figure the EdgeL3 and SEA papers quote)
  and the peak of simultaneously live activations when the kernels run one
  after the other (BatchNormalization and ReLU fused into the preceding conv,
  as the LiteRT converter fuses them), three ways: ``sequential`` (the live
  sum, a lower bound), ``arena`` (what LiteRT-Micro's greedy planner
  allocates) and ``inplace`` (with in-place elementwise ops, pools and
  row-streamed convs); see :mod:`edgel3.export.schedule`;
- the arena LiteRT-Micro allocates (:attr:`MemoryReport.micro`: head, tail,
  persistent buffers, total): from the tflite-micro interpreter itself for a
  ``.tflite`` file when the package is installed (:mod:`edgel3.export.micro`),
  otherwise an estimate with a margin (:func:`~edgel3.export.schedule.micro_estimate`);
- a pass/fail table against named budgets (the device presets of
  :mod:`edgel3.export.devices`) or user budgets, and which presets each export
  fits (:meth:`MemoryReport.device_table`).

Units: sizes in bytes; ``KiB``/``MiB`` are powers of 1024 (as in MCU
datasheets; ``KB``/``MB`` in budget strings are read the same way).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..exceptions import ParameterError
from .budgets import BUDGETS, Budget, parse_budget, parse_size
from .devices import check_needs, device_table, fit, needs, select_devices
from .graph import Graph, frontend_macs, graph_from_keras, graph_from_tflite
from .schedule import (
    PRECISIONS,
    SCHEDULES,
    arena_size,
    file_estimate,
    micro_estimate,
    peak,
    tensor_bytes,
)

__all__ = [
    "Budget",
    "BUDGETS",
    "PRECISIONS",
    "MemoryReport",
    "memory_report",
    "parse_budget",
    "parse_size",
    "sparse_sizes",
]


# --------------------------------------------------------------------------- sparse encodings


def sparse_sizes(kernel: np.ndarray, value_bytes: int, *, channels_last: bool = True) -> dict:
    """Bytes of one weight kernel stored densely and with two sparse encodings.

    Parameters
    ----------
    kernel : np.ndarray
        A conv kernel ``(kh, kw, cin, cout)`` (Keras, ``channels_last=True``) or
        ``(cout, kh, kw, cin)`` (LiteRT), or a dense kernel.
    value_bytes : int
        Bytes per stored value (4, 2 or 1).
    channels_last : bool
        Whether the output channel is the last axis (rows of the CSR matrix).

    Returns
    -------
    dict
        ``nonzero`` (count), ``dense``, ``values`` (non-zeros only, the papers'
        figure), ``bitmap`` (one bit per weight + non-zeros), ``csr`` (non-zeros +
        a column index per non-zero, 1/2/4 B as the row length needs, + a uint32
        row pointer per output channel).
    """
    n = int(kernel.size)
    rows = int(kernel.shape[-1] if channels_last else kernel.shape[0]) if kernel.ndim else 1
    cols = max(n // max(rows, 1), 1)
    nonzero = int(np.count_nonzero(kernel))
    index_bytes = 1 if cols <= 256 else 2 if cols <= 65536 else 4
    values = nonzero * value_bytes
    return {
        "nonzero": nonzero,
        "dense": n * value_bytes,
        "values": values,
        "bitmap": math.ceil(n / 8) + values,
        "csr": values + nonzero * index_bytes + (rows + 1) * 4,
    }


# --------------------------------------------------------------------------- report


@dataclass
class MemoryReport:
    """Result of :func:`memory_report`; ``str(report)`` is the text table, see :meth:`to_json`."""

    name: str
    source: str
    input_shape: tuple
    output_shape: tuple
    params: int
    kernel_params: int
    nonzero_kernel_params: int
    macs: dict
    frontend: dict | None
    static: dict
    largest_activation: dict
    peaks: dict
    layers: list
    checks: list = field(default_factory=list)
    measured: dict | None = None
    micro: dict | None = None
    exports: list = field(default_factory=list)

    @property
    def sparsity(self) -> float:
        """Percentage of zero weights in the conv/dense kernels."""
        if not self.kernel_params:
            return 0.0
        return 100.0 * (1 - self.nonzero_kernel_params / self.kernel_params)

    def passed(self, budget: str | None = None) -> bool:
        """Whether every check (of one budget, or of all) passed."""
        checks = [c for c in self.checks if budget is None or c["budget"] == budget]
        return all(c["ok"] for c in checks)

    def device_table(self, devices=None) -> dict:
        """Which export fits which device: flash, RAM and arena needs against each preset.

        Parameters
        ----------
        devices : sequence of str or Budget, optional
            Device presets (names from :data:`~edgel3.export.devices.DEVICES`,
            ``'all'``) or budgets; default every preset.

        Returns
        -------
        dict
            ``devices`` (name -> flash, ram, inference, code, board, source) and
            ``rows``: one per export (a Keras model: float32, float16, int8,
            estimated; a ``.tflite`` file: that file) with its ``need``
            (:func:`~edgel3.export.devices.needs`), ``source`` and ``fits``
            (device name -> :func:`~edgel3.export.devices.fit`).
        """
        return device_table(self.name, self.exports, devices)

    def device_fits(self, devices=None) -> dict[str, bool]:
        """Whether the report's own export fits each device preset.

        The own export is the ``.tflite`` file, or for a Keras model its int8
        export (estimated), the one a microcontroller runs.
        """
        own = next(r for r in self.exports if r["own"])
        return {d.name: fit(own["need"], d)["ok"] for d in select_devices(devices)}

    def to_dict(self) -> dict:
        """The report as plain JSON-serialisable Python objects."""
        return {
            "name": self.name,
            "source": self.source,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "params": self.params,
            "kernel_params": self.kernel_params,
            "nonzero_kernel_params": self.nonzero_kernel_params,
            "sparsity_percent": round(self.sparsity, 4),
            "macs": self.macs,
            "frontend": self.frontend,
            "static_bytes": self.static,
            "largest_activation": self.largest_activation,
            "peak_activation_bytes": self.peaks,
            "measured": self.measured,
            "micro": self.micro,
            "exports": self.exports,
            "checks": self.checks,
            "layers": self.layers,
        }

    def to_json(self, path: str | os.PathLike | None = None, *, indent: int = 1) -> str:
        """Serialise to JSON; also write it to ``path`` if given."""
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            from ..files import atomic_write

            with atomic_write(path) as handle:
                handle.write((text + "\n").encode("utf-8"))
        return text

    def format(self, *, layers: bool = True) -> str:
        """The text report (see :mod:`edgel3.export.memory` for the conventions)."""
        from .report_text import format_report

        return format_report(self, layers=layers)

    def __str__(self) -> str:
        return self.format()


def _tflite_graph(path: Path) -> tuple[Graph, bytes]:
    """The graph and flatbuffer of a ``.tflite`` file, its front end from the sidecar."""
    from ..litert import frontend_from_dict, read_sidecar

    content = path.read_bytes()
    graph = graph_from_tflite(content, path.name)
    info = read_sidecar(path)
    if info and info.get("frontend"):
        config = frontend_from_dict(info["frontend"])
        graph.frontend = config
        graph.frontend_macs = frontend_macs(config)
        graph.frontend_constants = config.n_bins * config.n_mels + config.n_dft
    return graph, content


def _load(model) -> tuple[Graph, bytes | None]:
    """Any value :func:`edgel3.reference.resolve_model` accepts, or bytes -> (Graph, bytes).

    The flatbuffer comes back for a ``.tflite`` file (None for a Keras model).
    """
    if isinstance(model, (bytes, bytearray)):
        return graph_from_tflite(bytes(model)), bytes(model)
    from ..reference import resolve_model
    from ..runners import is_keras_model

    if is_keras_model(model):
        return graph_from_keras(model), None
    reference = resolve_model(model)  # unknown names, missing files, other objects raise here
    path = reference.path
    if path is None and reference.kind == "object":
        path = getattr(model, "path", None)  # a LiteRTModel
    if path is not None and Path(path).suffix.lower() == ".tflite":
        return _tflite_graph(Path(path))
    if reference.kind == "object":
        raise ParameterError(
            "memory_report expects a keras.Model, a model name, a .tflite/.h5/.h5.gz/.keras "
            f"file or flatbuffer bytes; got a {type(model).__name__} runner."
        )
    from .convert import load_keras_model

    return graph_from_keras(load_keras_model(reference)), None


def _frontend_info(graph: Graph) -> dict | None:
    config = graph.frontend
    if config is None:
        return None
    stft, mel = graph.frontend_macs
    return {
        "sample_rate": config.sample_rate,
        "n_dft": config.n_dft,
        "n_hop": config.n_hop,
        "n_mels": config.n_mels,
        "n_frames": config.n_frames,
        "macs_stft_dense_dft": stft,
        "macs_mel": mel,
        "constants": graph.frontend_constants,
    }


def memory_report(model, *, budgets=("cortex-m7",), include_frontend: bool = False) -> MemoryReport:
    """Sizes, MACs and activation memory of a model, checked against device budgets.

    Parameters
    ----------
    model : keras.Model, str, path-like, LiteRTModel or bytes
        Anything :func:`edgel3.reference.resolve_model` accepts that has layers
        to count: a Keras model, a model name (``'sea-64'``, ``'tiny'``), a
        model file (``.tflite``, ``.h5``, ``.h5.gz``, ``.keras``), a loaded
        :class:`~edgel3.litert.LiteRTModel`, or a LiteRT flatbuffer.
        A ``.tflite`` export's sidecar JSON (written by
        :func:`~edgel3.export.export_model`) supplies its front end.
    budgets : sequence of str, dict or Budget
        Budgets to check (see :func:`parse_budget`); ``()`` for none.
    include_frontend : bool
        For Keras models: count the in-model mel spectrogram's input and
        output as activations. By default the network is analysed from its
        log-mel input (the front end streams one frame at a time on a device)
        and the front end is reported separately. ``.tflite`` files are
        analysed as they are.

    Returns
    -------
    MemoryReport
        ``report.micro`` is the LiteRT-Micro arena (``head``, ``tail``,
        ``persistent``, ``total``, ``source``): the tflite-micro interpreter's
        for a ``.tflite`` file when the package runs it, else the estimate
        (``source='estimate'``, for a Keras model that of its int8 export);
        ``report.exports`` what each export needs on a device.

    Raises
    ------
    ParameterError
        For an unknown model name, an unsupported object or an invalid budget.
    WeightsError
        For a model file that does not exist or cannot be read.

    Examples
    --------
    >>> from edgel3.networks import build_model
    >>> from edgel3.specs import get_spec
    >>> report = memory_report(build_model(get_spec('sea-64')))   # doctest: +SKIP
    >>> report.largest_activation['bytes']['float32']              # doctest: +SKIP
    409600
    """
    budgets = [parse_budget(b) for b in budgets]
    graph, content = _load(model)
    nodes = [
        n
        for n in graph.nodes
        if include_frontend or graph.source != "keras" or n.kind != "frontend"
    ]
    is_tflite = graph.source == "tflite"

    kernels = [(k, not is_tflite) for n in nodes for k in n.kernels]
    params = graph.params if is_tflite else sum(n.params for n in nodes if n.kind != "frontend")
    kernel_params = sum(int(k.size) for k, _ in kernels)
    nonzero = sum(int(np.count_nonzero(k)) for k, _ in kernels)

    static = {}
    for precision, (value_bytes, _) in PRECISIONS.items():
        encodings = [sparse_sizes(k, value_bytes, channels_last=cl) for k, cl in kernels]
        other = (params - kernel_params) * value_bytes
        static[precision] = {
            "dense": params * value_bytes,
            "bitmap": other + sum(e["bitmap"] for e in encodings),
            "csr": other + sum(e["csr"] for e in encodings),
            "best": other + sum(min(e["dense"], e["bitmap"], e["csr"]) for e in encodings),
            "nonzero_kernel_values": sum(e["values"] for e in encodings),
        }

    used = sorted({t for n in nodes for t in (*n.inputs, *n.outputs)})
    precisions = [None] if is_tflite else list(PRECISIONS)
    labels = {None: "exported"}
    big = max(used, key=lambda t: graph.tensors[t].size, default=None)
    largest = {"name": "", "shape": [], "elements": 0, "bytes": {}}
    if big is not None:
        tensor = graph.tensors[big]
        largest.update(name=tensor.name, shape=list(tensor.shape), elements=tensor.size)
        for precision in PRECISIONS:
            largest["bytes"][precision] = tensor_bytes(graph, precision)(big)
        if is_tflite:
            heaviest = max(used, key=tensor_bytes(graph, None))
            largest["bytes"]["exported"] = tensor_bytes(graph, None)(heaviest)
            largest["exported_name"] = graph.tensors[heaviest].name

    peaks: dict = {}
    per_node_live: dict = {}
    for schedule in SCHEDULES:
        peaks[schedule] = {}
        for precision in precisions:
            key = labels.get(precision, precision)
            if schedule == "arena":
                peaks[schedule][key] = {"bytes": arena_size(graph, nodes, precision), "node": ""}
                continue
            value, worst, per_node = peak(graph, nodes, precision, schedule)
            peaks[schedule][key] = {"bytes": value, "node": nodes[worst].name if nodes else ""}
            per_node_live[(schedule, key)] = per_node

    macs = {"conv": 0, "dense": 0, "frontend": 0}
    for n in nodes:
        if n.kind in macs:
            macs[n.kind] += int(n.macs)
    if graph.frontend is not None and not any(n.kind == "frontend" for n in nodes):
        macs["frontend"] = int(sum(graph.frontend_macs))  # computed outside the network
    macs["network"] = macs["conv"] + macs["dense"]

    first_key = "exported" if is_tflite else "float32"
    layers = [
        {
            "name": n.name,
            "op": n.label,
            "output_shape": list(graph.tensors[n.outputs[0]].shape) if n.outputs else [],
            "params": int(n.params),
            "nonzero_kernel": int(sum(np.count_nonzero(k) for k in n.kernels)),
            "kernel": int(sum(k.size for k in n.kernels)),
            "macs": int(n.macs),
            "live_bytes_sequential": int(per_node_live[("sequential", first_key)][i]),
            "live_bytes_inplace": int(per_node_live[("inplace", first_key)][i]),
        }
        for i, n in enumerate(nodes)
    ]
    measured = None
    if is_tflite:
        measured = {
            "file_bytes": graph.file_bytes,
            "constant_bytes": int(sum(graph.constant_bytes.values())),
            "constant_bytes_by_dtype": dict(graph.constant_bytes),
            "dequantized_weight_bytes": graph.dequantized_bytes,
            "activation_dtypes": sorted({graph.tensors[t].dtype for t in used}),
        }
    in_shape = graph.tensors[nodes[0].inputs[0]].shape if nodes and nodes[0].inputs else ()
    out_shape = graph.tensors[graph.outputs[0]].shape if graph.outputs else ()
    report = MemoryReport(
        name=graph.name,
        source=graph.source,
        input_shape=tuple(in_shape),
        output_shape=tuple(out_shape),
        params=int(params),
        kernel_params=kernel_params,
        nonzero_kernel_params=nonzero,
        macs=macs,
        frontend=_frontend_info(graph),
        static=static,
        largest_activation=largest,
        peaks=peaks,
        layers=layers,
        measured=measured,
    )
    report.micro, report.exports = _micro_and_exports(report, graph, nodes, content)
    report.checks = _checks(report, budgets)
    return report


def _tflite_micro(graph: Graph, nodes, content: bytes) -> dict:
    """The interpreter's own figures, or the estimate with the reason it stands in."""
    from .micro import MicroRuntimeError, MicroUnavailableError, micro_allocations

    try:
        return micro_allocations(content)
    except (MicroUnavailableError, MicroRuntimeError) as exc:
        note = str(exc)
    return {**micro_estimate(graph, nodes, None), "note": note}


def _micro_and_exports(report: MemoryReport, graph: Graph, nodes, content) -> tuple:
    """``MemoryReport.micro`` and one row per export with what it needs on a device.

    A ``.tflite`` file is its own export; a Keras model has three, estimated:
    float32, float16 (LiteRT-Micro has no float16 kernels: LiteRT dequantizes
    the weights into RAM at load) and int8 (the report's own ``micro``), plus
    each with the best sparse weight encoding for a pruned model.
    """
    if content is not None:
        micro = _tflite_micro(graph, nodes, content)
        need = needs(
            model_bytes=report.measured["file_bytes"],
            arena_bytes=micro["total"],
            frontend=graph.frontend,
            dequantized_bytes=report.measured["dequantized_weight_bytes"],
        )
        row = {"export": "exported", "source": micro["source"], "micro": micro, "need": need}
        return micro, [{**row, "own": True}]
    rows = []
    for precision in PRECISIONS:
        estimate = micro_estimate(graph, nodes, precision)
        model_bytes = file_estimate(graph, nodes, report.params, precision)
        sizes = {precision: model_bytes}
        if report.sparsity >= 1.0:
            static = report.static[precision]
            sizes[f"{precision}+sparse"] = model_bytes - static["dense"] + static["best"]
        for label, size in sizes.items():
            need = needs(
                model_bytes=size,
                arena_bytes=estimate["total"],
                frontend=graph.frontend,
                dequantized_bytes=4 * report.params if precision == "float16" else 0,
            )
            row = {"export": label, "source": "estimate", "micro": estimate, "need": need}
            rows.append({**row, "own": label == "int8"})
    micro = next(r["micro"] for r in rows if r["own"])
    return micro, rows


def _checks(report: MemoryReport, budgets: list[Budget]) -> list[dict]:
    """One row per export x budget item (flash, inference, ram): bytes, limit, ok."""
    return [
        {"budget": budget.name, "row": row["export"], "source": row["source"], **check}
        for budget in budgets
        for row in report.exports
        for check in check_needs(row["need"], budget)
    ]
