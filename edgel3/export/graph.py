"""A minimal dataflow graph of a network, read from a Keras model or a ``.tflite`` file.

The memory report (:mod:`edgel3.export.memory`) works on this one structure:
tensors (shape, dtype if known) and nodes in execution order (inputs,
outputs, stored parameters, weight kernels, multiply-accumulates). Keras
graphs are fused the way the LiteRT converter fuses them (a BatchNormalization
and a ReLU following a conv disappear into it), so both sources describe the
same sequence of kernels. All shapes include the batch axis, set to 1: figures
are per 1-s window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..exceptions import ParameterError
from ..specs import FrontendConfig

#: Activations a LiteRT conv / fully-connected kernel can fuse.
_FUSABLE_ACTIVATIONS = ("relu", "relu6", "tanh")
#: Elementwise TFLite ops that may run in place on their first input.
_ELEMENTWISE_OPS = {
    "ADD",
    "MUL",
    "SUB",
    "DIV",
    "MAXIMUM",
    "MINIMUM",
    "RELU",
    "RELU6",
    "TANH",
    "LOGISTIC",
    "SQRT",
    "RSQRT",
    "LOG",
    "EXP",
    "ABS",
    "NEG",
    "SQUARE",
    "QUANTIZE",
    "HARD_SWISH",
    "LEAKY_RELU",
}
_POOL_OPS = {"MAX_POOL_2D", "AVERAGE_POOL_2D"}
_ALIAS_OPS = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}


@dataclass
class Tensor:
    """An activation tensor: ``shape`` includes the batch axis (1)."""

    name: str
    shape: tuple[int, ...]
    dtype: str | None = None  # None: precision-dependent (Keras graphs)

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


@dataclass
class Node:
    """One kernel of the sequential schedule.

    ``kind`` is one of ``'conv'``, ``'dense'``, ``'pool'``, ``'elementwise'``,
    ``'alias'`` (a reshape sharing its input's buffer), ``'frontend'`` or
    ``'other'``. ``halo_rows`` > 0 marks a stride-1 'same' conv that can run
    in place with that many pending output rows.
    """

    name: str
    kind: str
    label: str
    inputs: list[int]
    outputs: list[int]
    params: int = 0
    kernels: list[np.ndarray] = field(default_factory=list)
    macs: int = 0
    halo_rows: int = 0
    fused: list[str] = field(default_factory=list)


@dataclass
class Graph:
    """Tensors and nodes (in execution order) of one network."""

    name: str
    source: str  # 'keras' or 'tflite'
    tensors: list[Tensor]
    nodes: list[Node]
    inputs: list[int]
    outputs: list[int]
    frontend: FrontendConfig | None = None
    frontend_macs: tuple[int, int] = (0, 0)  # (STFT as a dense DFT, mel weighting)
    frontend_constants: int = 0
    constant_bytes: dict[str, int] = field(default_factory=dict)  # tflite: stored, per dtype
    dequantized_bytes: int = 0  # tflite: fp32 copies of fp16 weights made at load time
    file_bytes: int | None = None
    params: int | None = None  # tflite: unique stored parameters


def frontend_macs(config: FrontendConfig) -> tuple[int, int]:
    """MACs of the kapre front end per window: (STFT as a dense DFT, mel weighting).

    kapre 0.1.4 computed the STFT as a convolution with ``n_dft``-tap real and
    imaginary kernels, so its cost is ``frames * n_dft * n_bins * 2``
    (docs/export.rst: 835.5 M for the 48 kHz model, 52.5 M for SEA); an FFT is
    far cheaper, but this is the figure the papers compare.
    """
    stft = config.n_frames * config.n_dft * config.n_bins * 2
    mel = config.n_frames * config.n_bins * config.n_mels
    return stft, mel


# --------------------------------------------------------------------------- Keras


def _shape(keras_tensor) -> tuple[int, ...]:
    return tuple(1 if d is None else int(d) for d in keras_tensor.shape)


def _as_list(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _keras_node(layer, inputs: list[int], outputs: list[int], tensors: list[Tensor]) -> Node:
    """Describe one Keras layer (before fusion)."""
    from keras import layers as kl

    from ..layers import MelSpectrogram

    name = layer.name
    params = int(layer.count_params())
    out = tensors[outputs[0]]
    if isinstance(layer, MelSpectrogram):
        macs = int(sum(frontend_macs(layer.config)))
        return Node(name, "frontend", "MelSpectrogram", inputs, outputs, params, macs=macs)
    if isinstance(layer, kl.Conv2D) and not isinstance(layer, kl.Conv2DTranspose):
        kernel = np.asarray(layer.kernel)
        kh, kw, cin_per_group, _ = kernel.shape
        macs = out.size * kh * kw * cin_per_group
        same_size = tensors[inputs[0]].shape[1:3] == out.shape[1:3]
        halo = (kh - 1) // 2 + 1 if same_size and tuple(layer.strides) == (1, 1) else 0
        node = Node(name, "conv", "Conv2D", inputs, outputs, params, [kernel], int(macs), halo)
        _fuse_activation(node, layer)
        return node
    if isinstance(layer, kl.Dense):
        kernel = np.asarray(layer.kernel)
        macs = out.size * kernel.shape[0]
        node = Node(name, "dense", "Dense", inputs, outputs, params, [kernel], int(macs))
        _fuse_activation(node, layer)
        return node
    pools = (kl.MaxPooling2D, kl.AveragePooling2D, kl.GlobalMaxPooling2D, kl.GlobalAveragePooling2D)
    if isinstance(layer, pools):
        return Node(name, "pool", type(layer).__name__, inputs, outputs, params)
    if isinstance(layer, (kl.Flatten, kl.Reshape, kl.Dropout, kl.Identity)):
        return Node(name, "alias", type(layer).__name__, inputs, outputs, params)
    if isinstance(layer, (kl.BatchNormalization, kl.Activation, kl.ReLU, kl.LayerNormalization)):
        label = type(layer).__name__
        if isinstance(layer, kl.Activation):
            label = f"Activation({layer.activation.__name__})"
        return Node(name, "elementwise", label, inputs, outputs, params)
    return Node(name, "other", type(layer).__name__, inputs, outputs, params)


def _activation_name(layer) -> str | None:
    """Name of a layer's activation (``'relu'``...), None if linear or absent."""
    from keras import layers as kl

    if isinstance(layer, kl.ReLU):
        return "relu"
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None)
    return None if name in (None, "linear") else name


def _fuse_activation(node: Node, layer) -> None:
    name = _activation_name(layer)
    if name is not None:
        node.fused.append(name.upper())
        node.label += "+" + name.upper()


def _try_fuse(node: Node, layer) -> bool:
    """Fold ``layer`` into the preceding conv/dense ``node``, as the LiteRT converter does."""
    from keras import layers as kl

    if node.kind not in ("conv", "dense"):
        return False
    has_activation = any(f != "BN" for f in node.fused)
    if isinstance(layer, kl.BatchNormalization):
        if has_activation or "BN" in node.fused:
            return False
        node.fused.append("BN")
        node.label += "+BN"
    elif isinstance(layer, (kl.Activation, kl.ReLU)):
        name = _activation_name(layer)
        if has_activation or name not in _FUSABLE_ACTIVATIONS:
            return False
        _fuse_activation(node, layer)
    else:
        return False
    node.params += int(layer.count_params())
    return True


def graph_from_keras(model) -> Graph:
    """Read a (functional or sequential) Keras model into a :class:`Graph`.

    The model's own call graph is followed, so layers shared with other
    models (a backbone cut out of a full model) are fine.

    Raises
    ------
    ParameterError
        If the model has no functional graph (subclassed, or never built).
    """
    from keras import layers as kl

    from ..layers import MelSpectrogram

    tensors: list[Tensor] = []
    ids: dict[int, int] = {}

    def tensor_id(keras_tensor) -> int:
        key = id(keras_tensor)
        if key not in ids:
            ids[key] = len(tensors)
            tensors.append(Tensor(getattr(keras_tensor, "name", "") or "", _shape(keras_tensor)))
        return ids[key]

    # The model's own call graph (layers shared with other models have more nodes).
    owner = getattr(model, "_functional", None) or model
    by_depth = getattr(owner, "_nodes_by_depth", None)
    if not by_depth:
        raise ParameterError(
            f"Cannot read the graph of model {getattr(model, 'name', model)!r}: the memory "
            "report needs a functional or sequential Keras model that has been built."
        )
    model_inputs = [tensor_id(t) for t in _as_list(owner.inputs)]
    calls = []
    for depth in sorted(by_depth, reverse=True):
        for node in by_depth[depth]:
            layer = node.operation
            if node.is_input or isinstance(layer, kl.InputLayer):
                continue
            inputs = [tensor_id(t) for t in node.input_tensors]
            outputs = [tensor_id(t) for t in node.outputs]
            for t in outputs:
                tensors[t].name = layer.name
            calls.append((layer, inputs, outputs))
    model_outputs = [tensor_id(t) for t in _as_list(owner.outputs)]
    consumers: dict[int, int] = {t: 1 for t in model_outputs}
    for _, inputs, _ in calls:
        for t in inputs:
            consumers[t] = consumers.get(t, 0) + 1
    nodes: list[Node] = []
    for layer, inputs, outputs in calls:
        previous = nodes[-1] if nodes else None
        fusable = previous is not None and previous.outputs == inputs and len(inputs) == 1
        if fusable and consumers[inputs[0]] == 1 and _try_fuse(previous, layer):
            previous.outputs = outputs
            continue
        nodes.append(_keras_node(layer, inputs, outputs, tensors))
    graph = Graph(
        getattr(model, "name", "model"), "keras", tensors, nodes, model_inputs, model_outputs
    )
    mel_layers = [layer for layer in model.layers if isinstance(layer, MelSpectrogram)]
    if mel_layers:
        config = mel_layers[0].config
        graph.frontend = config
        graph.frontend_macs = frontend_macs(config)
        graph.frontend_constants = config.n_bins * config.n_mels + config.n_dft
    return graph


# --------------------------------------------------------------------------- TFLite


def _schema():
    """The TFLite flatbuffer schema module (LiteRT's, else TensorFlow's)."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        try:
            import importlib

            # tf.lite is an API stub; the schema lives in the real package path.
            schema = importlib.import_module("tensorflow.lite.python.schema_py_generated")
        except ImportError as exc:
            raise ImportError(
                "Reading .tflite files needs the LiteRT runtime: pip install 'edgel3[export]' "
                "(ai-edge-litert)."
            ) from exc
    return schema


def _enum_names(enum_class) -> dict[int, str]:
    return {value: name for name, value in vars(enum_class).items() if not name.startswith("_")}


_NUMPY_TYPES = {
    "FLOAT32": "float32",
    "FLOAT16": "float16",
    "FLOAT64": "float64",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT16": "int16",
    "UINT16": "uint16",
    "INT32": "int32",
    "UINT32": "uint32",
    "INT64": "int64",
    "UINT64": "uint64",
    "BOOL": "bool",
    "COMPLEX64": "complex64",
    "COMPLEX128": "complex128",
}


def _buffer_bytes(buf: bytes, buffer) -> np.ndarray | None:
    """Raw bytes of a flatbuffer ``Buffer`` (inline data or, for large models, an offset)."""
    offset = buffer.Offset() if hasattr(buffer, "Offset") else 0
    if offset > 1:
        return np.frombuffer(buf, dtype=np.uint8, count=buffer.Size(), offset=offset)
    if buffer.DataLength() == 0:
        return None
    return buffer.DataAsNumpy()


def graph_from_tflite(buf: bytes, name: str = "model") -> Graph:
    """Read the main subgraph of a LiteRT flatbuffer into a :class:`Graph`.

    Constant tensors (those with stored data, and fp16 weights dequantized at
    load time) are parameters; every other tensor is an activation.

    Raises
    ------
    ParameterError
        If ``buf`` is not a TFLite flatbuffer.
    """
    schema = _schema()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ParameterError(f"{name!r} is not a LiteRT/TFLite flatbuffer (no 'TFL3' identifier).")
    model = schema.Model.GetRootAs(buf, 0)
    subgraph = model.Subgraphs(0)
    op_names = _enum_names(schema.BuiltinOperator)
    type_names = _enum_names(schema.TensorType)

    raw_tensors = [subgraph.Tensors(i) for i in range(subgraph.TensorsLength())]
    data: dict[int, np.ndarray] = {}
    aliases: dict[int, int] = {}  # dequantized weight -> its stored fp16 tensor
    dtypes: list[str] = []
    constant_bytes: dict[str, int] = {}
    seen_buffers: set[int] = set()
    for index, tensor in enumerate(raw_tensors):
        dtype = _NUMPY_TYPES.get(type_names.get(tensor.Type(), ""), "uint8")
        dtypes.append(dtype)
        raw = _buffer_bytes(buf, model.Buffers(tensor.Buffer()))
        if raw is None:
            continue
        data[index] = raw.view(dtype) if raw.size % np.dtype(dtype).itemsize == 0 else raw
        if tensor.Buffer() not in seen_buffers:
            seen_buffers.add(tensor.Buffer())
            constant_bytes[dtype] = constant_bytes.get(dtype, 0) + int(raw.size)

    tensors = [
        Tensor(
            # Fused names join every TF op folded in with ';': keep the first.
            (t.Name() or b"").decode("utf-8", "replace").split(";")[0],
            tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else (),
            dtypes[i],
        )
        for i, t in enumerate(raw_tensors)
    ]
    nodes: list[Node] = []
    dequantized_bytes = 0
    param_tensors: set[int] = set()
    seen_kernels: set[int] = set()
    for k in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(k)
        code = model.OperatorCodes(op.OpcodeIndex())
        op_name = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        ins = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
        outs = [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
        if op_name == "DEQUANTIZE" and ins and ins[0] in data:
            # fp16 weights: dequantized once at load time into a persistent fp32 copy.
            for out in outs:
                data[out] = data[ins[0]]
                dequantized_bytes += tensors[out].size * 4
                aliases[out] = ins[0]
            continue
        params = [
            aliases.get(i, i)
            for position, i in enumerate(ins)
            if i in data and _is_parameter(op_name, position, tensors[aliases.get(i, i)].dtype)
        ]
        param_tensors.update(params)
        activations = [i for i in ins if i >= 0 and i not in data]
        constants = [i for i in ins if i >= 0 and i in data]
        node = _tflite_node(f"{k}:{op_name}", op_name, activations, outs, constants, tensors, data)
        node.params = sum(tensors[i].size for i in params)
        if node.kernels:
            weight = aliases.get(constants[0], constants[0])
            if weight in seen_kernels:  # a kernel shared by several ops is stored once
                node.kernels = []
            seen_kernels.add(weight)
        nodes.append(node)
    _mark_frontend(nodes)
    graph_inputs = [int(i) for i in subgraph.InputsAsNumpy()]
    graph_outputs = [int(i) for i in subgraph.OutputsAsNumpy()]
    graph = Graph(name, "tflite", tensors, nodes, graph_inputs, graph_outputs)
    graph.constant_bytes = constant_bytes
    graph.dequantized_bytes = dequantized_bytes
    graph.file_bytes = len(buf)
    graph.params = sum(tensors[i].size for i in param_tensors)
    return graph


def _mark_frontend(nodes: list[Node]) -> None:
    """In a graph with an in-graph STFT, the mel product before the first conv is front end."""
    if not any(n.label == "RFFT2D" for n in nodes):
        return
    for node in nodes:
        if node.kind == "conv":
            return
        if node.kind == "dense":
            node.kind = "frontend"
            node.kernels = []


def _is_parameter(op_name: str, position: int, dtype: str) -> bool:
    """Whether a constant operand is a learned parameter (not a shape, axis or index)."""
    if dtype not in ("int32", "int64"):
        return True
    # int32 biases of quantized kernels; other integer constants are shapes/axes/indices.
    return position == 2 and op_name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _tflite_node(name, op_name, activations, outputs, constants, tensors, data) -> Node:
    params = 0  # set by the caller
    out = tensors[outputs[0]] if outputs else Tensor("", ())
    if op_name in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(constants) >= 1:
        weights = tensors[constants[0]]
        kernel = np.asarray(data[constants[0]]).reshape(weights.shape)
        if op_name == "CONV_2D":
            cout, kh, kw, cin = weights.shape
            macs = out.size * kh * kw * cin
        else:
            _, kh, kw, _ = weights.shape
            macs = out.size * kh * kw
        src = tensors[activations[0]] if activations else out
        same = len(src.shape) == 4 and src.shape[1:3] == out.shape[1:3]
        halo = (kh - 1) // 2 + 1 if same and op_name == "CONV_2D" else 0
        return Node(name, "conv", op_name, activations, outputs, params, [kernel], macs, halo)
    if op_name == "FULLY_CONNECTED" and constants:
        weights = tensors[constants[0]]
        kernel = np.asarray(data[constants[0]]).reshape(weights.shape)
        macs = out.size * weights.shape[-1]
        return Node(name, "dense", op_name, activations, outputs, params, [kernel], macs)
    if op_name == "BATCH_MATMUL":
        operands = [tensors[i] for i in (*activations, *constants)]
        depth = operands[0].shape[-1] if operands and operands[0].shape else 0
        return Node(name, "dense", op_name, activations, outputs, params, [], out.size * depth)
    if op_name == "RFFT2D" and activations:
        frames = tensors[activations[0]]
        n_fft = frames.shape[-1] if frames.shape else 0
        # A dense DFT, as kapre computed it: every output bin (re, im) sees every sample.
        return Node(
            name, "frontend", op_name, activations, outputs, params, [], out.size * n_fft * 2
        )
    if op_name in _POOL_OPS:
        return Node(name, "pool", op_name, activations, outputs, params)
    if op_name in _ALIAS_OPS:
        return Node(name, "alias", op_name, activations, outputs, params)
    if op_name in _ELEMENTWISE_OPS:
        return Node(name, "elementwise", op_name, activations, outputs, params)
    return Node(name, "other", op_name, activations, outputs, params)


def row_bytes(tensor: Tensor, itemsize: int) -> int:
    """Bytes of one row (axis 1) of an NHWC tensor."""
    if len(tensor.shape) < 3:
        return tensor.size * itemsize
    return math.prod(tensor.shape[2:]) * itemsize
