"""Activation memory of a sequential schedule: liveness, arena placement, in-place execution.

Three figures for the kernels of a :class:`~edgel3.export.graph.Graph` run one
after the other (see :mod:`edgel3.export.memory`):

``sequential``
    the largest sum of simultaneously live tensors (a lower bound for any
    allocator);
``arena``
    the arena LiteRT-Micro's greedy memory planner lays out for that
    schedule: buffers sorted by size (largest first), each placed at the
    lowest 16-byte-aligned offset free during its lifetime; for a ``.tflite``
    file this is the planner's own figure (checked against tflite-micro);
``inplace``
    elementwise ops and pools overwrite their input, and a stride-1 'same'
    conv whose output rows are no wider than its input rows writes over its
    input with a delay of ``(k - 1) // 2 + 1`` output rows.

The interpreter's arena holds more than the planned activations (its
``head``): a ``tail`` of persistent bookkeeping and kernel buffers.
:func:`micro_estimate` bounds it from the graph when the interpreter itself
(:mod:`edgel3.export.micro`) is not at hand, and :func:`file_estimate` bounds
the ``.tflite`` file a Keras model exports to.
"""

from __future__ import annotations

import numpy as np

from .graph import Graph, row_bytes

#: Bytes per stored parameter and per activation value. LiteRT's float16 models
#: store fp16 weights but compute (and keep activations) in float32.
PRECISIONS: dict[str, tuple[int, int]] = {"float32": (4, 4), "float16": (2, 4), "int8": (1, 1)}
SCHEDULES = ("sequential", "arena", "inplace")
ARENA_ALIGNMENT = 16  # LiteRT-Micro aligns every planned buffer to 16 bytes

# The tail bound (docs/export.rst, "Arena head, tail and the estimate"), fitted to the
# interpreter's reports on tiny, SEA 512/256/128/64 and L3 exports (float32, int8, banded):
#: bytes per output channel of a kernel with weights (int32 multiplier + shift per channel)
TAIL_PER_CHANNEL = 8
#: bytes per kernel run (node + registration struct, eval tensors, op data)
TAIL_PER_KERNEL = 216
#: bytes per model (input/output tensor structs, their quantization, the allocator's own)
TAIL_BASE = 1024
#: safety factor on the fitted tail, for layouts the fit has not seen
TAIL_SAFETY = 1.25
# The file bound: stored values + per-channel quantization (scale, zero point, int32 bias)
# and names + per-op records + the flatbuffer's fixed part.
FILE_PER_CHANNEL = 32
FILE_PER_KERNEL = 256
FILE_BASE = 4096


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


def tensor_bytes(graph: Graph, precision: str | None):
    def size(t: int) -> int:
        tensor = graph.tensors[t]
        if precision is None:
            return tensor.size * np.dtype(tensor.dtype or "float32").itemsize
        complex_factor = 2 if (tensor.dtype or "").startswith("complex") else 1
        return tensor.size * PRECISIONS[precision][1] * complex_factor

    return size


def peak(graph: Graph, nodes, precision: str | None, schedule: str) -> tuple[int, int, list]:
    """Peak live activation bytes: (bytes, index of the worst node, bytes at every node)."""
    owner, first, last = _buffers(graph, nodes)
    size = tensor_bytes(graph, precision)
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


def arena_size(graph: Graph, nodes, precision: str | None) -> int:
    """Bytes of the arena LiteRT-Micro's greedy planner needs for this schedule."""
    _, first, last = _buffers(graph, nodes)
    size = tensor_bytes(graph, precision)
    buffers = []
    for b in first:
        aligned = -(-size(b) // ARENA_ALIGNMENT) * ARENA_ALIGNMENT
        buffers.append((aligned, first[b], last[b]))
    placed: list[tuple[int, int, int, int]] = []  # offset, size, first, last
    top = 0
    for length, start, stop in sorted(buffers, key=lambda t: (-t[0], t[1])):
        offset = 0
        for other_offset, other_size, other_start, other_stop in sorted(placed):
            if other_stop < start or other_start > stop:
                continue  # not alive at the same time
            if other_offset - offset >= length:
                break
            offset = max(offset, other_offset + other_size)
        placed.append((offset, length, start, stop))
        top = max(top, offset + length)
    return top


def _kernel_counts(graph: Graph, nodes) -> tuple[int, int]:
    """(kernels the interpreter runs, output channels of those with weights)."""
    run = [n for n in nodes if n.kind not in ("alias", "frontend")]
    channels = 0
    for node in run:
        if (node.params or node.kernels) and node.outputs:
            shape = graph.tensors[node.outputs[0]].shape
            channels += int(shape[-1]) if shape else 1
    return len(run), channels


def micro_estimate(graph: Graph, nodes, precision: str | None) -> dict:
    """Upper bound of the tflite-micro arena: planned head + a margin for the tail.

    ``tail = TAIL_SAFETY x (TAIL_BASE + TAIL_PER_KERNEL x kernels + TAIL_PER_CHANNEL x
    channels)``, rounded up to the arena alignment, where ``kernels`` counts the nodes the
    interpreter runs (reshapes excluded) and ``channels`` the output channels of those
    with weights. Tests hold ``total`` >= the interpreter's total, and within 25 % of it,
    on every model edgel3 builds.

    Parameters
    ----------
    graph : Graph
    nodes : list of Node
        The schedule (the report's nodes).
    precision : str or None
        A key of :data:`PRECISIONS`, or None for a ``.tflite`` graph's own dtypes.

    Returns
    -------
    dict
        ``head``, ``tail``, ``persistent`` (the per-channel part of the tail), ``total``
        (bytes) and ``source`` (``'estimate'``).
    """
    head = arena_size(graph, nodes, precision)
    kernels, channels = _kernel_counts(graph, nodes)
    fitted = TAIL_BASE + TAIL_PER_KERNEL * kernels + TAIL_PER_CHANNEL * channels
    tail = -(-int(TAIL_SAFETY * fitted) // ARENA_ALIGNMENT) * ARENA_ALIGNMENT
    return {
        "head": int(head),
        "tail": int(tail),
        "persistent": int(TAIL_SAFETY * TAIL_PER_CHANNEL * channels),
        "total": int(head + tail),
        "source": "estimate",
    }


def file_estimate(graph: Graph, nodes, params: int, precision: str) -> int:
    """Upper bound of the ``.tflite`` file of a Keras graph at one precision (bytes).

    ``params x bytes per value + FILE_BASE + FILE_PER_KERNEL x kernels +
    FILE_PER_CHANNEL x channels`` (see :func:`micro_estimate` for the counts).
    """
    kernels, channels = _kernel_counts(graph, nodes)
    stored = params * PRECISIONS[precision][0]
    return int(stored + FILE_BASE + FILE_PER_KERNEL * kernels + FILE_PER_CHANNEL * channels)
