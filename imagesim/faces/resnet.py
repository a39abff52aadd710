"""dlib's face ResNet, read from its own model file and run by ONNX Runtime: the same 128-d descriptors, ~20x faster.

dlib-bin is built without BLAS, so its `compute_face_descriptor` costs ~50 ms a face and holds the GIL. The network
is small (29 convolutions, `dnn_face_recognition_ex.cpp`'s `anet_type`); its weights are plain float32 tensors in
dlib's serialisation format. They are read here with numpy, each affine (batch-norm) folded into its convolution,
and built into an ONNX graph in memory: no export step, no file written, no torch. ONNX Runtime then runs it in
~2.5 ms a face on one core and releases the GIL. The outputs equal dlib's to ~1e-6 (tests/test_faces_resnet.py),
so distances, thresholds and stored descriptors are unchanged. A file whose layout is not the known one raises
`ModelError`; the embedder then falls back to dlib's own network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError

CHIP = 150  # input_rgb_image_sized<150>
# (blocks, first block halves the size) per level, from the input up: alevel4 .. alevel0 of anet_type
LEVELS = ((3, False), (4, True), (3, True), (3, True), (1, True))
N_CONV = 1 + 2 * sum(n for n, _ in LEVELS)
_TAG = re.compile(rb"\x01([\x04-\x20])(con_4|affine_|fc_2|input_rgb_image_sized)")


@dataclass(frozen=True)
class Conv:
    weight: np.ndarray  # (out, in, k, k), the following affine folded in
    bias: np.ndarray
    stride: int
    pad: int


@dataclass(frozen=True)
class ResNetWeights:
    convs: tuple[Conv, ...]
    fc: np.ndarray  # (256, 128): descriptor = pooled @ fc
    means: tuple[float, float, float]  # subtracted from R, G, B before the /256


def _int(b: bytes, i: int) -> tuple[int, int]:
    """dlib's compact integer: a control byte (size in the low 4 bits, 0x80 = negative), then little-endian bytes."""
    head = b[i]
    n = head & 0x0F
    value = int.from_bytes(b[i + 1:i + 1 + n], "little")
    return (-value if head & 0x80 else value), i + 1 + n


def _float(b: bytes, i: int) -> tuple[float, int]:
    mantissa, i = _int(b, i)
    exponent, i = _int(b, i)
    return mantissa * 2.0 ** exponent, i


def _tensor(b: bytes, i: int) -> tuple[np.ndarray, int]:
    """A tensor: version, four dimensions, then raw little-endian float32."""
    _, i = _int(b, i)
    dims = []
    for _ in range(4):
        d, i = _int(b, i)
        dims.append(d)
    n = int(np.prod(dims))
    if n < 0 or i + 4 * n > len(b):
        raise ValueError("tensor runs past the end of the file")
    return np.frombuffer(b, "<f4", n, i).astype(np.float32), i + 4 * n


def read_weights(path: str) -> ResNetWeights:
    """The network's weights from dlib_face_recognition_resnet_model_v1.dat. Layers are found by their version tags
    (in the file from the input up); anything but the known layout raises ModelError."""
    try:
        data = Path(path).read_bytes()
        convs: list[tuple[np.ndarray, np.ndarray, int, int]] = []
        affines: list[tuple[np.ndarray, np.ndarray]] = []
        fc: np.ndarray | None = None
        means: tuple[float, float, float] | None = None
        for m in _TAG.finditer(data):
            if m.group(1)[0] != len(m.group(2)):
                continue
            tag, i = m.group(2), m.end()
            if tag == b"con_4":
                params, i = _tensor(data, i)
                fields = []
                for _ in range(7):  # num_filters, nr, nc, stride_y, stride_x, padding_y, padding_x
                    v, i = _int(data, i)
                    fields.append(v)
                filters, nr, nc, stride, stride_x, pad, pad_x = fields
                inputs = (params.size - filters) // (filters * nr * nc)
                size = filters * inputs * nr * nc
                if nr != nc or stride != stride_x or pad != pad_x or params.size != size + filters:
                    raise ValueError("a convolution of unexpected shape")
                convs.append((params[:size].reshape(filters, inputs, nr, nc), params[size:], stride, pad))
            elif tag == b"affine_":
                params, i = _tensor(data, i)
                half = params.size // 2
                affines.append((params[:half], params[half:]))
            elif tag == b"fc_2":
                outputs, i = _int(data, i)
                inputs, i = _int(data, i)
                params, i = _tensor(data, i)
                fc = params[:inputs * outputs].reshape(inputs, outputs)
            else:
                r, i = _float(data, i)
                g, i = _float(data, i)
                bl, i = _float(data, i)
                means = (r, g, bl)
    except (OSError, ValueError, IndexError) as exc:
        raise ModelError(f"face descriptor model {path} could not be read: {exc}") from exc
    if len(convs) != N_CONV or len(affines) != N_CONV or fc is None or fc.shape != (256, 128) or means is None:
        raise ModelError(f"face descriptor model {path} is not dlib's face ResNet v1 "
                         f"({len(convs)} convolutions, {len(affines)} affine layers)")
    folded = []
    for (w, bias, stride, pad), (gamma, beta) in zip(convs, affines, strict=True):
        if gamma.size != w.shape[0]:
            raise ModelError(f"face descriptor model {path}: an affine layer does not match its convolution")
        folded.append(Conv(w * gamma[:, None, None, None], bias * gamma + beta, stride, pad))
    return ResNetWeights(tuple(folded), fc, means)


def build_graph(weights: ResNetWeights) -> Any:
    """The network as an ONNX model: uint8 chips (n, 150, 150, 3) in, raw 128-d descriptors out.

    dlib's add_prev adds tensors of different shapes by zero-padding the smaller at the end (channels, rows,
    columns): the shortcut's pooled input has fewer channels, and at 8 -> 3 px the convolution one row fewer."""
    from onnx import TensorProto, helper, numpy_helper

    inits: list[Any] = []
    nodes: list[Any] = []
    count = [0]

    def name(prefix: str) -> str:
        count[0] += 1
        return f"{prefix}{count[0]}"

    def const(arr: np.ndarray) -> str:
        key = name("c")
        inits.append(numpy_helper.from_array(arr, key))
        return key

    def node(op: str, inputs: list[str], **attrs: Any) -> str:
        out = name("t")
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def conv(x: str, c: Conv, shape: list[int], relu: bool) -> tuple[str, list[int]]:
        k = c.weight.shape[2]
        y = node("Conv", [x, const(c.weight), const(c.bias)], kernel_shape=[k, k], strides=[c.stride] * 2,
                 pads=[c.pad] * 4)
        out = [c.weight.shape[0]] + [(s + 2 * c.pad - k) // c.stride + 1 for s in shape[1:]]
        return (node("Relu", [y]) if relu else y), out

    def pad_to(x: str, shape: list[int], target: list[int]) -> str:
        if shape == target:
            return x
        pads = [0] * 5 + [t - s for t, s in zip(target, shape, strict=True)]  # (n, k, h, w) starts, then ends
        return node("Pad", [x, const(np.asarray(pads, np.int64))])

    x = node("Cast", ["chips"], to=TensorProto.FLOAT)
    x = node("Transpose", [x], perm=[0, 3, 1, 2])
    x = node("Sub", [x, const(np.asarray(weights.means, np.float32).reshape(1, 3, 1, 1))])
    x = node("Mul", [x, const(np.asarray([1 / 256], np.float32))])
    x, shape = conv(x, weights.convs[0], [3, CHIP, CHIP], relu=True)
    x = node("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2])
    shape = [shape[0]] + [(s - 3) // 2 + 1 for s in shape[1:]]
    convs = iter(weights.convs[1:])
    for blocks, halves in LEVELS:
        for block in range(blocks):
            y, y_shape = conv(x, next(convs), shape, relu=True)
            y, y_shape = conv(y, next(convs), y_shape, relu=False)
            if halves and block == 0:
                x = node("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
                shape = [shape[0]] + [(s - 2) // 2 + 1 for s in shape[1:]]
                target = [max(a, b) for a, b in zip(shape, y_shape, strict=True)]
                x, y, shape = pad_to(x, shape, target), pad_to(y, y_shape, target), target
            x = node("Relu", [node("Add", [x, y])])
    x = node("Flatten", [node("GlobalAveragePool", [x])])
    nodes.append(helper.make_node("MatMul", [x, const(weights.fc)], ["descriptor"]))
    graph = helper.make_graph(
        nodes, "dlib_face_resnet_v1",
        [helper.make_tensor_value_info("chips", TensorProto.UINT8, ["n", CHIP, CHIP, 3])],
        [helper.make_tensor_value_info("descriptor", TensorProto.FLOAT, ["n", 128])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


class OnnxFaceResNet:
    """dlib's face descriptor network on ONNX Runtime: `(n, 150, 150, 3)` uint8 chips in, `(n, 128)` float32 out."""

    def __init__(self, path: str, *, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        model = build_graph(read_weights(path))
        try:
            self._session = ort.InferenceSession(model.SerializeToString(), options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - any ORT failure means: use dlib's own network
            raise ModelError(f"face descriptor network could not be built on ONNX Runtime: {exc}") from exc

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        return np.asarray(self._session.run(None, {"chips": np.ascontiguousarray(chips, np.uint8)})[0], np.float32)
