"""Memory report of a model for a microcontroller: sizes, MACs, activations, budgets.

For a Keras model or an exported ``.tflite`` file, :func:`memory_report` gives

- the parameter count and the static size per precision (float32, float16,
  int8), dense and with a sparse encoding of the weight kernels (bitmap or CSR
  + non-zero values) for pruned models;
- multiply-accumulates per 1-s window (convs / dense layers, and the front end);
- the largest activation tensor (the figure the EdgeL3 and SEA papers quote)
  and the true peak of simultaneously live activations when the kernels run
  one after the other, under two schedules:

  ``sequential``
      every kernel holds its whole input and output (what the LiteRT-Micro
      arena planner needs; BatchNormalization and ReLU are fused into the
      preceding conv as the converter fuses them);
  ``inplace``
      elementwise ops and pools overwrite their input, and a stride-1 'same'
      conv whose output rows are no wider than its input rows writes over its
      input with a delay of ``(k - 1) // 2 + 1`` output rows;

- a pass/fail table against named (``'cortex-m7'``) or user budgets.

Units: sizes in bytes; ``KiB``/``MiB`` are powers of 1024 (as in MCU
datasheets; ``KB``/``MB`` in budget strings are read the same way).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..exceptions import ParameterError
from ._graph import Graph, graph_from_keras, graph_from_tflite, row_bytes

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

KIB = 1024
MIB = 1024 * 1024

#: Bytes per stored parameter and per activation value. LiteRT's float16 models
#: store fp16 weights but compute (and keep activations) in float32.
PRECISIONS: dict[str, tuple[int, int]] = {"float32": (4, 4), "float16": (2, 4), "int8": (1, 1)}
SCHEDULES = ("sequential", "inplace")


@dataclass(frozen=True)
class Budget:
    """Memory limits of a target device, in bytes (``None``: not checked).

    Parameters
    ----------
    name : str
    flash : int, optional
        Room for the stored model (static size).
    ram : int, optional
        Room for the peak activations plus the 1-s audio window (float32) and
        one STFT frame of the front end.
    inference : int, optional
        Room for the peak activations alone.
    """

    name: str
    flash: int | None = None
    ram: int | None = None
    inference: int | None = None


#: Named budgets. ``cortex-m7``: the SONYC mote (STM32H7), PIPELINES.md §6.
BUDGETS: dict[str, Budget] = {
    "cortex-m7": Budget("cortex-m7", flash=2 * MIB, ram=1 * MIB, inference=512 * KIB),
}

_UNITS = {"": 1, "b": 1, "k": KIB, "kb": KIB, "kib": KIB, "m": MIB, "mb": MIB, "mib": MIB}


def parse_size(text) -> int:
    """Read a size: an int (bytes) or a string like ``'512KiB'``, ``'2 MB'``, ``'1.5M'``.

    ``K``, ``KB`` and ``KiB`` all mean 1024 bytes; ``M``, ``MB``, ``MiB`` 1024².

    Raises
    ------
    ParameterError
        If the text is not a non-negative size.
    """
    if isinstance(text, (int, np.integer)) and not isinstance(text, bool) and text >= 0:
        return int(text)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if match is None or match.group(2).lower() not in _UNITS:
        raise ParameterError(
            f"Invalid size {text!r}: expected bytes or a number with a unit "
            "(B, KiB/KB/K, MiB/MB/M), e.g. '512KiB'."
        )
    return int(round(float(match.group(1)) * _UNITS[match.group(2).lower()]))


def parse_budget(spec) -> Budget:
    """Turn a budget name, a spec string, a mapping or a :class:`Budget` into a Budget.

    Parameters
    ----------
    spec : str, dict or Budget
        A name from :data:`BUDGETS` (``'cortex-m7'``), or
        ``'[name:]flash=2MiB,ram=1MiB,inference=512KiB'`` (any subset), or a
        dict with those keys.

    Raises
    ------
    ParameterError
        For unknown names, keys or sizes.
    """
    if isinstance(spec, Budget):
        return spec
    if isinstance(spec, dict):
        items = dict(spec)
        name = str(items.pop("name", "custom"))
    else:
        text = str(spec).strip()
        if text.lower() in BUDGETS:
            return BUDGETS[text.lower()]
        if "=" not in text:
            raise ParameterError(
                f"Unknown budget {text!r}: use one of {sorted(BUDGETS)} or "
                "'name:flash=2MiB,ram=1MiB,inference=512KiB'."
            )
        name, _, body = text.rpartition(":")
        items = {}
        for part in filter(None, (p.strip() for p in body.split(","))):
            key, _, value = part.partition("=")
            items[key.strip().lower()] = value
        name = name.strip() or "custom"
    unknown = set(items) - {"flash", "ram", "inference"}
    if unknown or not items:
        raise ParameterError(
            f"Invalid budget {spec!r}: keys must be among flash, ram, inference; "
            f"got {sorted(items) or 'none'}."
        )
    return Budget(name, **{key: parse_size(value) for key, value in items.items()})


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


# --------------------------------------------------------------------------- liveness


def _buffers(graph: Graph, nodes) -> tuple[dict[int, int], dict[int, int], dict[int, int]]:
    """Map tensors to buffers (reshapes share their input's) and each buffer's live range."""
    parent: dict[int, int] = {}

    def find(t: int) -> int:
        while parent.get(t, t) != t:
            t = parent[t]
        return t

    for node in nodes:
        if node.kind == "alias" and node.inputs and node.outputs:
            parent[find(node.outputs[0])] = find(node.inputs[0])
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i, node in enumerate(nodes):
        for t in node.inputs:
            b = find(t)
            first.setdefault(b, 0)  # a tensor used before being produced: a graph input
            last[b] = i
        for t in node.outputs:
            b = find(t)
            first.setdefault(b, i)
            last[b] = max(last.get(b, i), i)
    for t in graph.outputs:
        if find(t) in first:
            last[find(t)] = len(nodes)
    return {t: find(t) for t in range(len(graph.tensors))}, first, last


def _tensor_bytes(graph: Graph, precision: str | None):
    def size(t: int) -> int:
        tensor = graph.tensors[t]
        if precision is None:
            return tensor.size * np.dtype(tensor.dtype or "float32").itemsize
        complex_factor = 2 if (tensor.dtype or "").startswith("complex") else 1
        return tensor.size * PRECISIONS[precision][1] * complex_factor

    return size


def _peak(graph: Graph, nodes, precision: str | None, schedule: str) -> tuple[int, int, list]:
    """Peak live activation bytes: (bytes, index of the worst node, bytes at every node)."""
    owner, first, last = _buffers(graph, nodes)
    size = _tensor_bytes(graph, precision)
    buffer_size = {b: size(b) for b in first}
    per_node = []
    for i, node in enumerate(nodes):
        live = sum(s for b, s in buffer_size.items() if first[b] <= i <= last[b])
        if schedule == "inplace" and node.inputs and node.outputs and node.kind != "alias":
            b_in, b_out = owner[node.inputs[0]], owner[node.outputs[0]]
            dies = last[b_in] == i and b_in != b_out
            s_in, s_out = buffer_size[b_in], buffer_size[b_out]
            if dies and node.kind in ("elementwise", "pool") and s_out <= s_in:
                live -= s_out
            elif dies and node.kind == "conv" and node.halo_rows:
                t_in, t_out = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
                if row_bytes(t_out, 1) <= row_bytes(t_in, 1):
                    # Output rows wait in a small ring until the input rows they cover die.
                    per_row = s_out // max(t_out.shape[1] if len(t_out.shape) > 1 else 1, 1)
                    live -= s_out - min(node.halo_rows * per_row, s_out)
        per_node.append(live)
    if not per_node:
        return 0, -1, []
    worst = int(np.argmax(per_node))
    return int(per_node[worst]), worst, per_node


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
        from ._report_text import format_report

        return format_report(self, layers=layers)

    def __str__(self) -> str:
        return self.format()


def _load(model) -> Graph:
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise ParameterError(f'memory_report: "{path}" is not a file.')
        if path.suffix.lower() == ".tflite":
            graph = graph_from_tflite(path.read_bytes(), path.name)
            from .runtime import read_sidecar

            info = read_sidecar(path)
            if info and info.get("frontend"):
                from ._graph import frontend_macs
                from .runtime import frontend_from_dict

                config = frontend_from_dict(info["frontend"])
                graph.frontend = config
                graph.frontend_macs = frontend_macs(config)
                graph.frontend_constants = config.n_bins * config.n_mels + config.n_dft
            return graph
        from ..core import load_model_file

        return graph_from_keras(load_model_file(path))
    if isinstance(model, (bytes, bytearray)):
        return graph_from_tflite(bytes(model))
    if hasattr(model, "layers") and hasattr(model, "inputs"):
        return graph_from_keras(model)
    raise ParameterError(
        "memory_report expects a keras.Model, a .tflite/.h5/.keras path or flatbuffer bytes; "
        f"got {type(model).__name__}."
    )


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
        # The 1-s window being analysed (float32) and one STFT frame.
        "ram_bytes": 4 * (config.sample_rate + config.n_dft),
    }


def memory_report(model, *, budgets=("cortex-m7",), include_frontend: bool = False) -> MemoryReport:
    """Sizes, MACs and activation memory of a model, checked against device budgets.

    Parameters
    ----------
    model : keras.Model, path-like or bytes
        A Keras model, a model file (``.tflite``, ``.h5``, ``.h5.gz``,
        ``.keras``) or a LiteRT flatbuffer. A ``.tflite`` export's sidecar JSON
        (written by :func:`~edgel3.export.export_model`) supplies its front end.
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

    Raises
    ------
    ParameterError
        For an unsupported model or an invalid budget.

    Examples
    --------
    >>> from edgel3.models import build_model
    >>> from edgel3.specs import get_spec
    >>> report = memory_report(build_model(get_spec('sea-64')))   # doctest: +SKIP
    >>> report.largest_activation['bytes']['float32']              # doctest: +SKIP
    409600
    """
    budgets = [parse_budget(b) for b in budgets]
    graph = _load(model)
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
            largest["bytes"][precision] = _tensor_bytes(graph, precision)(big)
        if is_tflite:
            heaviest = max(used, key=_tensor_bytes(graph, None))
            largest["bytes"]["exported"] = _tensor_bytes(graph, None)(heaviest)
            largest["exported_name"] = graph.tensors[heaviest].name

    peaks: dict = {}
    per_node_live: dict = {}
    for schedule in SCHEDULES:
        peaks[schedule] = {}
        for precision in precisions:
            value, worst, per_node = _peak(graph, nodes, precision, schedule)
            key = labels.get(precision, precision)
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
    report.checks = _checks(report, budgets)
    return report


def _checks(report: MemoryReport, budgets: list[Budget]) -> list[dict]:
    """One row per precision (and sparse encoding) x budget item x schedule."""
    frontend_ram = report.frontend["ram_bytes"] if report.frontend else 0
    if report.measured is not None:  # fp16 weights become fp32 copies in RAM
        frontend_ram += report.measured["dequantized_weight_bytes"]
    rows = []
    if report.measured is not None:
        rows.append(("exported", report.measured["file_bytes"], "exported"))
    else:
        sparse = report.sparsity >= 1.0
        for precision in PRECISIONS:
            rows.append((precision, report.static[precision]["dense"], precision))
            if sparse:
                best = report.static[precision]["best"]
                rows.append((f"{precision}+sparse", best, precision))
    checks = []
    for budget in budgets:
        for label, static, peak_key in rows:
            if budget.flash is not None:
                checks.append(_check(budget, label, "flash", None, static, budget.flash))
            for schedule in SCHEDULES:
                peak = report.peaks[schedule][peak_key]["bytes"]
                if budget.inference is not None:
                    checks.append(
                        _check(budget, label, "inference", schedule, peak, budget.inference)
                    )
                if budget.ram is not None:
                    checks.append(
                        _check(budget, label, "ram", schedule, peak + frontend_ram, budget.ram)
                    )
    return checks


def _check(budget: Budget, row: str, item: str, schedule, value: int, limit: int) -> dict:
    return {
        "budget": budget.name,
        "row": row,
        "item": item,
        "schedule": schedule,
        "bytes": int(value),
        "limit": int(limit),
        "ok": bool(value <= limit),
    }
