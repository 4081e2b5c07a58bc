"""ONNX external data, found without the onnx package: a minimal protobuf wire-format walk.

A ``model.onnx`` may keep tensors outside itself (``data_location: EXTERNAL`` with an
``external_data`` location such as ``weights.bin``). onnxruntime then reads those
bytes from a path of its choosing, beyond any checksum of the bundle, so the bundle
refuses such models. ``external_tensors`` walks the messages that can hold tensors:
ModelProto -> graphs (main, training, function bodies) -> initializers, sparse
initializers and node attributes (tensors, sparse tensors, subgraphs), at any depth
up to ``MAX_DEPTH``; every other field is skipped by its length, never copied.
"""

from __future__ import annotations

__all__ = ["MAX_DEPTH", "external_tensors"]

MAX_DEPTH = 64
"""Messages nested deeper than this are refused (protobuf's own parsers stop at 100)."""

# Field number -> message type of the fields that lead to tensors (onnx.proto3 numbering).
_MODEL, _GRAPH, _NODE, _ATTRIBUTE, _TENSOR, _SPARSE, _FUNCTION, _TRAINING = range(8)
_CHILDREN = {
    _MODEL: {7: _GRAPH, 20: _TRAINING, 25: _FUNCTION},
    _TRAINING: {1: _GRAPH, 2: _GRAPH},
    _GRAPH: {1: _NODE, 5: _TENSOR, 15: _SPARSE},
    _FUNCTION: {7: _NODE},
    _NODE: {5: _ATTRIBUTE},
    _ATTRIBUTE: {5: _TENSOR, 6: _GRAPH, 10: _TENSOR, 11: _GRAPH, 22: _SPARSE, 23: _SPARSE},
    _SPARSE: {1: _TENSOR, 2: _TENSOR},
    _TENSOR: {},
}
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 8, 13, 14
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


def external_tensors(model: bytes) -> list[str]:
    """Names of the tensors of the serialized ONNX ``model`` whose data is external
    (``data_location`` EXTERNAL or any ``external_data`` entry); ``"<unnamed>"`` for
    tensors without a name. ValueError when ``model`` is not well-formed protobuf or
    nests messages deeper than ``MAX_DEPTH``."""
    found: list[str] = []
    _walk(memoryview(model), 0, len(model), _MODEL, 0, found)
    return found


def _walk(data: memoryview, start: int, end: int, kind: int, depth: int, found: list[str]) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"messages are nested deeper than {MAX_DEPTH} levels")
    children = _CHILDREN[kind]
    name, external = "<unnamed>", False
    position = start
    while position < end:
        tag, position = _varint(data, position, end)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise ValueError(f"field number 0 at byte {position}")
        if wire == _VARINT:
            value, position = _varint(data, position, end)
            if kind == _TENSOR and field == _TENSOR_DATA_LOCATION and value != 0:
                external = True
        elif wire == _FIXED64 or wire == _FIXED32:
            position += 8 if wire == _FIXED64 else 4
        elif wire == _LENGTH:
            length, position = _varint(data, position, end)
            if length > end - position:
                raise ValueError(f"a field of {length} bytes at byte {position} runs past its message")
            if field in children:
                _walk(data, position, position + length, children[field], depth + 1, found)
            elif kind == _TENSOR and field == _TENSOR_EXTERNAL_DATA:
                external = True
            elif kind == _TENSOR and field == _TENSOR_NAME:
                name = bytes(data[position:position + length]).decode("utf-8", "replace")
            position += length
        else:
            raise ValueError(f"wire type {wire} (groups are not used by ONNX) at byte {position}")
        if position > end:
            raise ValueError(f"a field runs past the end of its message at byte {end}")
    if external:
        found.append(name)


def _varint(data: memoryview, position: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while position < end and shift < 70:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
    raise ValueError(f"a truncated or overlong varint ends at byte {position}")
