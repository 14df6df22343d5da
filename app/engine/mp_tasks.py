"""MediaPipe Tasks bundles (``.task``) made from the tflite models the pinned wheel ships.

The wheel carries the Pose, palm and hand models of the legacy
solutions but no ``.task`` files, and no network is needed to make them: each model gets
NormalizationOptions metadata (what the Tasks graphs read to scale the input tensor) from
mediapipe's own metadata writer, and the two models of a landmarker are packed with its bundle
helper under the names the Tasks graphs look for. Sources are checked by SHA-256 before use, so
a different wheel fails loudly instead of loading models we never measured. Bundles are built
once into a cache directory and reused.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

# Input scaling, as (mean, std) on 0..255 pixels: the pose detector takes [-1, 1],
# the palm detector and the landmark models [0, 1] (as the legacy graphs' tensor ranges say).
MINUS_ONE_TO_ONE = (127.5, 127.5)
ZERO_TO_ONE = (0.0, 255.0)

# bundle -> {name inside the bundle: (wheel path under mediapipe/modules, SHA-256, scaling)}
BUNDLES: dict[str, dict[str, tuple[str, str, tuple[float, float]]]] = {
    "pose_landmarker": {
        "pose_detector.tflite": (
            "pose_detection/pose_detection.tflite",
            "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c", MINUS_ONE_TO_ONE),
        "pose_landmarks_detector.tflite": (
            "pose_landmark/pose_landmark_full.tflite",
            "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f", ZERO_TO_ONE),
    },
    "hand_landmarker": {
        "hand_detector.tflite": (
            "palm_detection/palm_detection_full.tflite",
            "1b14e9422c6ad006cde6581a46c8b90dd573c07ab7f3934b5589e7cea3f89a54", ZERO_TO_ONE),
        "hand_landmarks_detector.tflite": (
            "hand_landmark/hand_landmark_full.tflite",
            "11c272b891e1a99ab034208e23937a8008388cf11ed2a9d776ed3d01d0ba00e3", ZERO_TO_ONE),
    },
}
BUILD = "1"  # bump when the way bundles are made changes: old cached ones are then ignored


def default_cache_dir() -> Path:
    """Return ~/.cache/posehook/mediapipe, where bundles go unless a directory is given."""
    return Path.home() / ".cache" / "posehook" / "mediapipe"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _modules_dir() -> Path:
    import mediapipe

    return Path(mediapipe.__file__).parent / "modules"


def _with_metadata(model: bytes, name: str, scaling: tuple[float, float]) -> bytes:
    """Return the tflite model with image-input NormalizationOptions written into it."""
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer

    writer = metadata_writer.MetadataWriter.create(bytearray(model))
    writer.add_general_info(name).add_image_input([scaling[0]], [scaling[1]])
    return bytes(writer.populate()[0])


def _key(bundle: str) -> str:
    """A short name for this bundle's sources and recipe (part of the cached file's name)."""
    import mediapipe

    parts = [BUILD, mediapipe.__version__] + [
        f"{inner}={sha}:{scaling}" for inner, (_, sha, scaling) in sorted(BUNDLES[bundle].items())]
    return _sha256("|".join(parts).encode())[:16]


def build(bundle: str, path: Path) -> None:
    """Write ``bundle`` to ``path`` from the wheel's models; ValueError for an unpinned one."""
    from mediapipe.tasks.python.metadata.metadata_writers import model_asset_bundle_utils

    modules = _modules_dir()
    models = {}
    for inner, (source, expected, scaling) in BUNDLES[bundle].items():
        data = (modules / source).read_bytes()
        if _sha256(data) != expected:
            raise ValueError(f"{modules / source} is not the model posehook was measured with "
                             f"(SHA-256 {_sha256(data)}, expected {expected}): install the "
                             f"mediapipe version pinned in requirements.txt")
        models[inner] = _with_metadata(data, inner, scaling)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".part", delete=False) as handle:
        partial = Path(handle.name)
    try:
        model_asset_bundle_utils.create_model_asset_bundle(models, str(partial))
        digest = _sha256(partial.read_bytes())
        os.replace(partial, path)  # readers see a whole bundle or none
    finally:
        partial.unlink(missing_ok=True)
    path.with_suffix(".sha256").write_text(digest + "\n")


def bundle_path(bundle: str, cache_dir: Path | None = None) -> Path:
    """Return the path of a ready ``bundle``: the cached one if intact, else built now."""
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"{bundle}-{_key(bundle)}.task"
    recorded = path.with_suffix(".sha256")
    if (path.is_file() and recorded.is_file()
            and recorded.read_text().strip() == _sha256(path.read_bytes())):
        return path
    build(bundle, path)
    return path
