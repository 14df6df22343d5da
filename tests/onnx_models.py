"""Tiny ONNX models with DWPose's inputs and outputs, built with onnx.helper for tests.

The detector emits fixed raw YOLOX rows (known boxes) at any of YOLOX's input sizes (640 for
-l and -m, 416 for -tiny); the pose model emits fixed SimCC peaks (known keypoints) at any input
size (288x384, 192x256), optionally marked with the batch it was run with. Each consumes its
input so ONNX Runtime accepts the graph.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STRIDES = (8, 16, 32)


def anchors(size: int) -> tuple[dict[int, int], int]:
    """Return each stride's first anchor and the anchor count of a square YOLOX input."""
    offsets, total = {}, 0
    for stride in STRIDES:
        offsets[stride] = total
        total += (size // stride) ** 2
    return offsets, total


def _zero_from(input_name: str, shape: list[int]) -> list[onnx.NodeProto]:
    """Nodes computing 0 * mean(input) reshaped to ``shape`` (ties the output to the input)."""
    return [
        helper.make_node("ReduceMean", [input_name], ["mean"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Reshape", ["mean", "zero_shape"], ["mean_r"]),
        helper.make_node("Mul", ["mean_r", "zero_k"], ["zero"]),
    ] if shape else []


def _save(graph: onnx.GraphProto, path: str) -> str:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _save_simcc(path: str, name: str, nodes: list, inits: list, batch: int | str,
                size: tuple[int, int]) -> str:
    """Save a graph with SimCC's input [N, 3, h, w] and outputs [N, 133, 2w], [N, 133, 2h]."""
    width, height = size
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, height, width])],
        [helper.make_tensor_value_info("simcc_x", TensorProto.FLOAT, [batch, 133, 2 * width]),
         helper.make_tensor_value_info("simcc_y", TensorProto.FLOAT, [batch, 133, 2 * height])],
        inits)
    return _save(graph, path)


def detector_row(box: tuple[float, float, float, float], ratio: float, score: float = 0.9,
                 cls: int = 0, stride: int = 32, size: int = 640) -> tuple[int, np.ndarray]:
    """Return (anchor, raw 85-row) that decodes to ``box`` (image pixels) at ``ratio``."""
    x1, y1, x2, y2 = (v * ratio for v in box)
    cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
    gx, gy = int(cx // stride), int(cy // stride)
    anchor = anchors(size)[0][stride] + gy * (size // stride) + gx
    row = np.zeros(85, dtype=np.float32)
    row[:4] = (cx / stride - gx, cy / stride - gy, math.log(w / stride), math.log(h / stride))
    row[4] = 1.0
    row[5 + cls] = score
    return anchor, row


def detector(path: str, rows: list[tuple[int, np.ndarray]], size: int = 640) -> str:
    """A YOLOX-shaped model: images [1,3,S,S] → output [1,A,85] with ``rows`` (A=8400 at 640)."""
    total = anchors(size)[1]
    indices = np.array([[0, a] for a, _ in rows], dtype=np.int64)
    updates = np.stack([r for _, r in rows]).astype(np.float32)
    inits = [numpy_helper.from_array(np.array([1, total, 85], dtype=np.int64), "shape"),
             numpy_helper.from_array(indices, "indices"),
             numpy_helper.from_array(updates, "updates"),
             numpy_helper.from_array(np.array([1, 1, 1], dtype=np.int64), "zero_shape"),
             numpy_helper.from_array(np.array(0, dtype=np.float32), "zero_k")]
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["base"],
                              value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0])),
             helper.make_node("ScatterND", ["base", "indices", "updates"], ["scattered"]),
             *_zero_from("images", [1, 1, 1]),
             helper.make_node("Add", ["scattered", "zero"], ["output"])]
    graph = helper.make_graph(
        nodes, "yolox_standin",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, total, 85])], inits)
    return _save(graph, path)


def pose(path: str, peaks_x: np.ndarray, peaks_y: np.ndarray, batch: int | str = "batch",
         size: tuple[int, int] = (288, 384), mark_batch: bool = False) -> str:
    """A SimCC model of input ``size`` (w, h) emitting constant maps x (133, 2w), y (133, 2h).

    With ``mark_batch`` every bin is raised by 0.01 x the batch it is run with, so a point's
    score says how many crops shared its call.
    """
    inits = [numpy_helper.from_array(peaks_x[None].astype(np.float32), "cx"),
             numpy_helper.from_array(peaks_y[None].astype(np.float32), "cy"),
             numpy_helper.from_array(np.array([-1, 1, 1], dtype=np.int64), "zero_shape"),
             numpy_helper.from_array(np.array(0, dtype=np.float32), "zero_k"),
             numpy_helper.from_array(np.array(0.01, dtype=np.float32), "per_crop"),
             numpy_helper.from_array(np.array([0], dtype=np.int64), "first")]
    nodes = [*_zero_from("input", [-1, 1, 1])]
    if mark_batch:
        nodes += [helper.make_node("Shape", ["input"], ["input_shape"]),
                  helper.make_node("Gather", ["input_shape", "first"], ["crops"]),
                  helper.make_node("Cast", ["crops"], ["crops_f"], to=TensorProto.FLOAT),
                  helper.make_node("Mul", ["crops_f", "per_crop"], ["mark"]),
                  helper.make_node("Add", ["zero", "mark"], ["offset"])]
    offset = "offset" if mark_batch else "zero"
    nodes += [helper.make_node("Add", ["cx", offset], ["simcc_x"]),
              helper.make_node("Add", ["cy", offset], ["simcc_y"])]
    return _save_simcc(path, "simcc_standin", nodes, inits, batch, size)


def peaks(points: dict[int, tuple[int, int]], value_x: float = 0.9, value_y: float = 0.9,
          size: tuple[int, int] = (288, 384)) -> tuple[np.ndarray, np.ndarray]:
    """SimCC maps with a peak at bin 2x / 2y for each keypoint index → (x, y) in input pixels."""
    sx, sy = np.zeros((133, 2 * size[0])), np.zeros((133, 2 * size[1]))
    for k, (x, y) in points.items():
        sx[k, 2 * x] = value_x
        sy[k, 2 * y] = value_y
    return sx, sy


def locator(path: str, size: tuple[int, int] = (288, 384), batch: int | str = "batch") -> str:
    """A SimCC model of input ``size`` (w, h) that finds the brightest spot of the crop.

    Every keypoint's x map is the crop's first channel maxed over rows, each bin given twice
    (SimCC's split ratio 2), and likewise y: so each point lands on the brightest pixel, and
    the whole chain (box, aspect, warp, normalisation, decode, back to the image) is tested.
    """
    inits = [numpy_helper.from_array(np.array([0], dtype=np.int64), "c0"),
             numpy_helper.from_array(np.array([1], dtype=np.int64), "c1"),
             numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
             numpy_helper.from_array(np.array([1, 1, 1, 2], dtype=np.int64), "twice"),
             numpy_helper.from_array(np.array([0, 1, -1], dtype=np.int64), "flat"),
             numpy_helper.from_array(np.array([1, 133, 1], dtype=np.int64), "points")]
    nodes = [helper.make_node("Slice", ["input", "c0", "c1", "axis1"], ["first"])]
    for axis, name in ((2, "simcc_x"), (3, "simcc_y")):
        nodes += [helper.make_node("ReduceMax", ["first"], [f"{name}_p"], axes=[axis],
                                   keepdims=0),
                  helper.make_node("Unsqueeze", [f"{name}_p", "minus1"], [f"{name}_u"]),
                  helper.make_node("Expand", [f"{name}_u", "twice"], [f"{name}_e"]),
                  helper.make_node("Reshape", [f"{name}_e", "flat"], [f"{name}_r"]),
                  helper.make_node("Expand", [f"{name}_r", "points"], [name])]
    inits.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus1"))
    return _save_simcc(path, "simcc_locator", nodes, inits, batch, size)
