"""Reading an ONNX file as data: every size is checked before anything is allocated, external
tensor data is read only from files inside the model's folder, and whatever is wrong with a
file (truncated, corrupt, a tensor claiming more bytes than it has) becomes one
`OnnxImportError` naming the file, never a traceback."""
from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np

from ..errors import LoomError
from ..limits import open_regular, show_bytes
from ..weights import MAX_WEIGHTS_BYTES

MAX_ONNX_BYTES = 2 << 30  # protobuf cannot hold a larger message: a bigger .onnx is not one


class OnnxImportError(LoomError):
    """An ONNX model Loom cannot import: names the file or the op type and node, and why, in
    one line (names from a corrupt file may hold control characters: they are escaped)."""

    def __init__(self, message):
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message)))


# element type -> (numpy dtype, the typed field holding its values when raw_data is empty)
_TYPES = {"FLOAT": (np.float32, "float_data"), "DOUBLE": (np.float64, "double_data"),
          "FLOAT16": (np.float16, "int32_data"), "INT8": (np.int8, "int32_data"),
          "INT16": (np.int16, "int32_data"), "INT32": (np.int32, "int32_data"),
          "INT64": (np.int64, "int64_data"), "UINT8": (np.uint8, "int32_data"),
          "UINT16": (np.uint16, "int32_data"), "UINT32": (np.uint32, "uint64_data"),
          "UINT64": (np.uint64, "uint64_data"), "BOOL": (np.bool_, "int32_data")}


def type_name(elem_type: int) -> str:
    import onnx
    try:
        return onnx.TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"type {elem_type}"


def np_dtype(elem_type: int, what: str) -> np.dtype:
    """The numpy dtype of an ONNX element type; OnnxImportError for types Loom cannot hold."""
    entry = _TYPES.get(type_name(elem_type))
    if entry is None:
        raise OnnxImportError(f"{what} has element type {type_name(elem_type)}, which Loom "
                              f"cannot hold")
    return np.dtype(entry[0])


def read_model(path):
    """The ModelProto in `path`, external data resolved inside its folder."""
    import onnx
    path = Path(path)
    try:
        with open_regular(path, MAX_ONNX_BYTES) as f:
            data = f.read()
        # from bytes: onnx.load would look at the file's name (here a descriptor) for a format
        model = onnx.load(io.BytesIO(data), format="protobuf", load_external_data=False)
    except FileNotFoundError:
        raise OnnxImportError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise OnnxImportError(f"{path}: cannot be read ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and kin: the file is data
        raise OnnxImportError(f"{path}: not an ONNX model, or a truncated or corrupt one "
                              f"({type(exc).__name__}: {exc})") from None
    check_model(model, path)
    resolve_external(model, path.parent, path)
    return model


def check_model(model, source):
    """What a parse that did not fail can still be: random bytes read as an empty model."""
    if model.ir_version <= 0 or not model.HasField("graph"):
        raise OnnxImportError(f"{source}: not an ONNX model (no IR version or no graph)")
    for tensor, where in tensors(model.graph):
        check_tensor(tensor, f"{source}: {where}")


def tensors(graph):
    """(tensor, where) for every tensor the import reads: initializers and node attributes
    (subgraphs belong to control flow, which the import refuses)."""
    for t in graph.initializer:
        yield t, f"initializer {t.name!r}"
    for node in graph.node:
        name = node.name or (node.output[0] if node.output else "")
        for attr in node.attribute:
            where = f"{node.op_type} node {name!r}"
            if attr.HasField("t"):
                yield attr.t, f"{where}, attribute {attr.name}"
            for t in attr.tensors:
                yield t, f"{where}, attribute {attr.name}"


def declared_bytes(tensor, where) -> int:
    if any(d < 0 for d in tensor.dims):
        raise OnnxImportError(f"{where}: negative dimension in {list(tensor.dims)}")
    return math.prod(tensor.dims) * np_dtype(tensor.data_type, where).itemsize


def check_tensor(tensor, where):
    """The values a tensor declares are all there (before anything is allocated for them)."""
    import onnx
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        return  # checked against its file by resolve_external
    size = declared_bytes(tensor, where)
    if tensor.HasField("raw_data"):
        if len(tensor.raw_data) != size:
            raise OnnxImportError(f"{where}: declares {show_bytes(size)} of data "
                                  f"({list(tensor.dims)}) but holds {len(tensor.raw_data)} bytes")
        return
    count = len(getattr(tensor, _TYPES[type_name(tensor.data_type)][1]))
    if count != math.prod(tensor.dims):
        raise OnnxImportError(f"{where}: declares {math.prod(tensor.dims)} values "
                              f"({list(tensor.dims)}) but holds {count}")


def to_array(tensor, where) -> np.ndarray:
    from onnx import numpy_helper
    check_tensor(tensor, where)
    return numpy_helper.to_array(tensor)


# ---- external data ---------------------------------------------------------------------------

def resolve_external(model, folder, source):
    """Read each external tensor's bytes into it, from files inside `folder` only; a tensor
    must fit its declared shape and lie within its file. Refuses without a folder."""
    import onnx
    total = 0
    for tensor, where in tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        where = f"{source}: {where}"
        if folder is None:
            raise OnnxImportError(f"{where}: its data is in an external file, which only a model "
                                  f"read from its file can name")
        total += _read_external(tensor, Path(folder), where)
        if total > MAX_WEIGHTS_BYTES:
            raise OnnxImportError(f"{source}: external data of more than "
                                  f"{show_bytes(MAX_WEIGHTS_BYTES)}")


def _read_external(tensor, folder, where) -> int:
    import onnx
    info = {e.key: e.value for e in tensor.external_data}
    path = inside(folder, info.get("location", ""), where)
    size = declared_bytes(tensor, where)
    try:
        offset, length = int(info.get("offset", 0)), int(info.get("length", size))
    except ValueError:
        raise OnnxImportError(f"{where}: offset or length is not a number") from None
    if length != size or offset < 0:
        raise OnnxImportError(f"{where}: external data of {length} bytes at offset {offset}, "
                              f"but its shape {list(tensor.dims)} needs {size}")
    try:
        with open_regular(path, MAX_WEIGHTS_BYTES) as f:
            available = os.fstat(f.fileno()).st_size
            if offset + size > available:
                raise OnnxImportError(f"{where}: needs bytes {offset} to {offset + size} of "
                                      f"{path.name}, which has {available}")
            f.seek(offset)
            raw = f.read(size)
    except (OSError, ValueError) as exc:
        raise OnnxImportError(f"{where}: external file {path.name}: {exc}") from None
    tensor.raw_data = raw
    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.DEFAULT
    return size


def inside(folder: Path, location: str, where) -> Path:
    """`location` resolved in `folder`, refused unless it is a relative path that stays there
    (no `..`, no absolute path, no link out of it)."""
    parts = location.replace("\\", "/").split("/")
    if not location or os.path.isabs(location) or location.startswith(("/", "\\")) \
            or ":" in parts[0] or ".." in parts:
        raise OnnxImportError(f"{where}: external data location {location!r} is not a file "
                              f"inside the model's folder")
    path = (folder / location).resolve()
    if os.path.commonpath([str(path), str(folder.resolve())]) != str(folder.resolve()):
        raise OnnxImportError(f"{where}: external data location {location!r} leads out of the "
                              f"model's folder")
    return path
