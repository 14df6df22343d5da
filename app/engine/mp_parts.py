"""Hands and face of one person in one MediaPipe graph, placed from the pose as Holistic does.

The graph is made of the wheel's own stateless subgraphs: for each hand, Holistic's
``HandLandmarksFromPoseToRecropRoi`` (a region from the pose's wrist, pinky and index points),
``HandRecropByRoiCpu`` (the hand re-crop model refines it) and ``HandLandmarkCpu``; for the
face, ``FaceLandmarkCpu`` on a region placed from the pose's eyes and nose. No palm or face
detector runs, the three parts run side by side in the graph's threads, and nothing is
carried from one picture to the next (Holistic's tracking subgraphs are left out, so the same
picture gives the same points). A part not asked for is gated off and its models do not run.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PARTS = ("left", "right", "face")
HAND_POINTS = {"left": (15, 17, 19), "right": (16, 18, 20)}  # pose wrist, pinky, index

_HAND = """
node {{
  calculator: "GateCalculator"
  input_stream: "image" input_stream: "{side}_pose" input_stream: "ALLOW:{side}_on"
  output_stream: "{side}_image" output_stream: "{side}_gated"
}}
node {{
  calculator: "ImagePropertiesCalculator"
  input_stream: "IMAGE:{side}_image" output_stream: "SIZE:{side}_size"
}}
node {{
  calculator: "HandLandmarksFromPoseToRecropRoi"
  input_stream: "HAND_LANDMARKS_FROM_POSE:{side}_gated" input_stream: "IMAGE_SIZE:{side}_size"
  output_stream: "ROI:{side}_pose_roi"
}}
node {{
  calculator: "HandRecropByRoiCpu"
  input_stream: "IMAGE:{side}_image" input_stream: "ROI:{side}_pose_roi"
  output_stream: "HAND_ROI_FROM_RECROP:{side}_roi"
}}
node {{
  calculator: "HandLandmarkCpu"
  input_stream: "IMAGE:{side}_image" input_stream: "ROI:{side}_roi"
  input_side_packet: "MODEL_COMPLEXITY:model_complexity"
  output_stream: "LANDMARKS:{side}_landmarks"
}}
"""
_FACE = """
node {
  calculator: "GateCalculator"
  input_stream: "image" input_stream: "face_rect" input_stream: "ALLOW:face_on"
  output_stream: "face_image" output_stream: "face_gated"
}
node {
  calculator: "FaceLandmarkCpu"
  input_stream: "IMAGE:face_image" input_stream: "ROI:face_gated"
  input_side_packet: "WITH_ATTENTION:with_attention"
  output_stream: "LANDMARKS:face_landmarks"
}
"""
FACE_SIZE = 0.7  # the face region's side as a share of face_square's (checked against FaceMesh)


def _config() -> str:
    streams = ['input_stream: "IMAGE:image"', 'input_stream: "FACE:face_rect"',
               'input_stream: "FACE_ON:face_on"']
    for side in HAND_POINTS:
        streams += [f'input_stream: "{side.upper()}:{side}_pose"',
                    f'input_stream: "{side.upper()}_ON:{side}_on"']
    streams += [f'output_stream: "{part.upper()}_LANDMARKS:{part}_landmarks"' for part in PARTS]
    return "\n".join(streams) + "".join(_HAND.format(side=side) for side in HAND_POINTS) + _FACE


def face_square(pose: np.ndarray) -> tuple[float, float, float]:
    """Return (centre x, centre y, side) of a square holding the face, from the pose's head."""
    nose, eye_l, eye_r, ear_l, ear_r, mouth_l, mouth_r = (
        pose[i, :2] for i in (0, 2, 5, 7, 8, 9, 10))
    ears = float(np.linalg.norm(ear_l - ear_r))
    eyes_to_mouth = float(np.linalg.norm((eye_l + eye_r) / 2 - (mouth_l + mouth_r) / 2))
    size = max(2.2 * ears, 5.0 * eyes_to_mouth, 16.0)
    return float(nose[0]), float(nose[1]), size


def face_region(pose: np.ndarray, width: int,
                height: int) -> tuple[float, float, float, float, float]:
    """Return the face's region (normalized centre x, y, width, height, rotation in radians):
    at the nose, turned so the eyes are level (MediaPipe's convention: y down)."""
    cx, cy, size = face_square(pose)
    eyes = pose[2, :2] - pose[5, :2]  # the subject's right eye to the left one
    rotation = -np.arctan2(-eyes[1], eyes[0])
    rotation = (rotation + np.pi) % (2 * np.pi) - np.pi
    side = FACE_SIZE * size
    return cx / width, cy / height, side / width, side / height, float(rotation)


class PartsGraph:
    """One graph: (image, one person's pose) in, that person's hands and face out."""

    def __init__(self) -> None:
        from google.protobuf import text_format
        from mediapipe.framework import calculator_pb2
        from mediapipe.framework.formats import landmark_pb2, rect_pb2
        from mediapipe.python.solution_base import SolutionBase

        config = text_format.Parse(_config(), calculator_pb2.CalculatorGraphConfig())
        self._graph = SolutionBase(
            graph_config=config, side_inputs={"model_complexity": 1, "with_attention": False},
            outputs=[f"{part}_landmarks" for part in PARTS])
        self._list = landmark_pb2.NormalizedLandmarkList
        self._rect = rect_pb2.NormalizedRect

    def _landmarks(self, pose: np.ndarray, width: int, height: int) -> Any:
        """Return (N, 3) pixel points (x, y, visibility) as a NormalizedLandmarkList."""
        listed = self._list()
        for x, y, seen in pose:
            listed.landmark.add(x=float(x / width), y=float(y / height), visibility=float(seen),
                                presence=float(seen))
        return listed

    def __call__(self, image: np.ndarray, pose: np.ndarray, hands: tuple[str, ...],
                 face: bool) -> dict[str, np.ndarray | None]:
        """Return {"left", "right": (21, 2), "face": (468, 2)} pixel points of the person with
        this (33, 3) pose, for the ``hands`` sides and the face asked for; None for a part
        not asked for or not found."""
        height, width = image.shape[:2]
        x, y, w, h, rotation = face_region(pose, width, height)
        inputs: dict[str, Any] = {
            "image": np.ascontiguousarray(image, np.uint8), "face_on": face,
            "face_rect": self._rect(x_center=x, y_center=y, width=w, height=h,
                                    rotation=rotation)}
        for side, points in HAND_POINTS.items():
            inputs[f"{side}_pose"] = self._landmarks(pose[list(points)], width, height)
            inputs[f"{side}_on"] = side in hands
        found = self._graph.process(inputs)
        out: dict[str, np.ndarray | None] = {}
        for part in PARTS:
            wanted = face if part == "face" else part in hands
            landmarks = getattr(found, f"{part}_landmarks")
            out[part] = None if landmarks is None or not wanted else np.array(
                [(lm.x * width, lm.y * height) for lm in landmarks.landmark])
        return out

    def close(self) -> None:
        """Release the graph."""
        self._graph.close()
