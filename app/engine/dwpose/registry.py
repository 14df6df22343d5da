"""The published DWPose-family ONNX models: name → where to get it, its SHA-256, its input size.

Pose models are SimCC whole-body models (133 COCO-WholeBody points) of DWPose (IDEA-Research,
distilled RTMPose) and RTMW (mmpose); detectors are Megvii's COCO YOLOX exports (raw head
output, decoded by ``detect.py``). The input sizes are the published ones; the engine reads the
real size from each model's input shape and uses these only when the shape is symbolic.

SHA-256: a hash is given only where a source for it was found, and says which. The openmmlab
archives and Megvii's ``yolox_m.onnx`` have none published (the 8 hex digits in openmmlab file
names are a prefix of the *PyTorch checkpoint's* hash, not of the ONNX archive), so ``sha256``
is None there and a download refuses to install them unless the caller passes a hash they
trust, or explicitly asks to trust the first download (its hash is then recorded beside the
file, printed, and checked on every later verify). Not published at all: DWPose-t/s/m at
384x288 (DWPose released only l at that size).
"""

from __future__ import annotations

from typing import NamedTuple


class ModelSpec(NamedTuple):
    """One downloadable model."""

    kind: str  # "detector" or "pose"
    file: str  # the installed file's name in the model directory
    url: str
    sha256: str | None  # of what ``url`` serves (the archive when ``member`` is set)
    input_size: tuple[int, int]  # (width, height) as published
    member: str | None = None  # the ONNX file inside a zip archive
    source: str = ""  # where the URL, the hash and the size come from


_HF = "https://huggingface.co/yzd-v/DWPose/resolve/main"
_MEGVII = "https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0"
_MMPOSE = "https://download.openmmlab.com/mmpose/v1/projects"
_NO_HASH = "; no SHA-256 published"


def _sdk(file: str, path: str, size: tuple[int, int]) -> ModelSpec:
    """An openmmlab onnx_sdk archive of a pose model (the model inside is end2end.onnx)."""
    return ModelSpec("pose", file, f"{_MMPOSE}/{path}", None, size, "end2end.onnx",
                     "URL and size from Tau-J/rtmlib README (model zoo, 2f36e3b)" + _NO_HASH)


MODELS: dict[str, ModelSpec] = {
    # Detectors. yolox-l is DWPose's own detector; the Hugging Face file is byte for byte
    # Megvii's release asset (the same SHA-256 is pinned for both by independent projects).
    "yolox-l": ModelSpec(
        "detector", "yolox_l.onnx", f"{_HF}/yolox_l.onnx",
        "7860ae79de6c89a3c1eb72ae9a2756c0ccfbe04b7791bb5880afabd97855a411", (640, 640),
        source="yzd-v/DWPose (linked from IDEA-Research/DWPose); hash pinned by several "
               "independent projects"),
    "yolox-m": ModelSpec(
        "detector", "yolox_m.onnx", f"{_MEGVII}/yolox_m.onnx", None, (640, 640),
        source="Megvii YOLOX demo/ONNXRuntime README" + _NO_HASH),
    "yolox-tiny": ModelSpec(
        "detector", "yolox_tiny.onnx", f"{_MEGVII}/yolox_tiny.onnx",
        "427cc366d34e27ff7a03e2899b5e3671425c262ea2291f88bb942bc1cc70b0f7", (416, 416),
        source="Megvii YOLOX demo/ONNXRuntime README; hash as pinned by an independent "
               "project (not published by Megvii)"),
    # DWPose whole-body models (COCO-WholeBody + UBody), whole-body AP 48.5 / 53.8 / 60.6 /
    # 63.1 at 256x192 and 66.5 at 384x288.
    "dwpose-l-384": ModelSpec(
        "pose", "dw-ll_ucoco_384.onnx", f"{_HF}/dw-ll_ucoco_384.onnx",
        "724f4ff2439ed61afb86fb8a1951ec39c6220682803b4a8bd4f598cd913b1843", (288, 384),
        source="yzd-v/DWPose; hash pinned by several independent projects"),
    "dwpose-t-256": _sdk("dwpose-t-256.onnx", "rtmposev1/onnx_sdk/rtmpose-t_simcc-ucoco_dw-"
                         "ucoco_270e-256x192-dcf277bf_20230728.zip", (192, 256)),
    "dwpose-s-256": _sdk("dwpose-s-256.onnx", "rtmposev1/onnx_sdk/rtmpose-s_simcc-ucoco_dw-"
                         "ucoco_270e-256x192-3fd922c8_20230728.zip", (192, 256)),
    "dwpose-m-256": _sdk("dwpose-m-256.onnx", "rtmposev1/onnx_sdk/rtmpose-m_simcc-ucoco_dw-"
                         "ucoco_270e-256x192-c8b76419_20230728.zip", (192, 256)),
    "dwpose-l-256": _sdk("dwpose-l-256.onnx", "rtmposev1/onnx_sdk/rtmpose-l_simcc-ucoco_dw-"
                         "ucoco_270e-256x192-4d6dfc62_20230728.zip", (192, 256)),
    # RTMW (cocktail of 14 datasets): whole-body AP 70.1 (l) and 70.2 (x) at 384x288.
    "rtmw-l-384": _sdk("rtmw-l-384.onnx", "rtmw/onnx_sdk/rtmw-dw-x-l_simcc-cocktail14_270e-"
                       "384x288_20231122.zip", (288, 384)),
    "rtmw-x-384": _sdk("rtmw-x-384.onnx", "rtmw/onnx_sdk/rtmw-x_simcc-cocktail13_pt-ucoco_"
                       "270e-384x288-0949e3a9_20230925.zip", (288, 384)),
}

DEFAULT_DETECTOR = "yolox-l"
DEFAULT_POSE = "dwpose-l-384"


def spec(name: str, kind: str) -> ModelSpec:
    """Return the model called ``name``; ValueError naming the choices if it is not a ``kind``."""
    found = MODELS.get(name)
    if found is None or found.kind != kind:
        choices = ", ".join(n for n, m in MODELS.items() if m.kind == kind)
        raise ValueError(f"unknown {kind} model {name!r}; choose one of: {choices}")
    return found
