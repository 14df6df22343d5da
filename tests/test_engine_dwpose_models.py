"""The dwpose engine's other models: every published size, batching, execution providers.

Tiny synthetic ONNX models (tests/onnx_models.py) stand in for each registry model, with the
registry's file names and the real models' input and output shapes.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from app.engine import load_engine, render
from app.engine.dwpose.pipeline import DWPoseEngine, choose_providers, with_options
from app.engine.dwpose.registry import MODELS
from tests import onnx_models

IMAGE = np.zeros((480, 1280, 3), dtype=np.uint8)
BOXES = [(100.0, 50.0, 400.0, 450.0), (700.0, 100.0, 1000.0, 460.0),
         (1050.0, 60.0, 1250.0, 330.0)]


def install(folder, detector: str, pose: str, boxes=BOXES[:2], batch="batch",
            mark_batch=False, points=None) -> None:
    """Write stand-ins for two registry models into ``folder`` under their file names."""
    det, body = MODELS[detector], MODELS[pose]
    side = det.input_size[0]
    ratio = min(side / 512, side / 1280)  # the engine sees the picture padded to 512 x 1280
    rows = [onnx_models.detector_row(box, ratio, 0.9 - 0.05 * i, size=side)  # A first
            for i, box in enumerate(boxes)]
    onnx_models.detector(str(folder / det.file), rows, size=side)
    width, height = body.input_size
    points = points or {0: (width // 2, height // 4), 5: (width // 3, height // 3),
                        6: (2 * width // 3, height // 3)}
    sx, sy = onnx_models.peaks(points, size=body.input_size)
    onnx_models.pose(str(folder / body.file), sx, sy, batch=batch, size=body.input_size,
                     mark_batch=mark_batch)


def test_every_registry_model_says_where_it_comes_from_and_how_big_its_input_is():
    sizes = {"detector": {(640, 640), (416, 416)}, "pose": {(192, 256), (288, 384)}}
    assert {n for n, m in MODELS.items() if m.kind == "pose"} == {
        "dwpose-t-256", "dwpose-s-256", "dwpose-m-256", "dwpose-l-256", "dwpose-l-384",
        "rtmw-l-384", "rtmw-x-384"}
    assert {n for n, m in MODELS.items() if m.kind == "detector"} == {
        "yolox-l", "yolox-m", "yolox-tiny"}
    for name, model in MODELS.items():
        assert model.url.startswith("https://") and model.source, name
        assert model.input_size in sizes[model.kind], name
        assert model.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", model.sha256), name
        assert (model.member is not None) == model.url.endswith(".zip"), name
        assert model.sha256 is not None or "no SHA-256 published" in model.source, name
    assert len({m.file for m in MODELS.values()}) == len(MODELS)
    assert MODELS["yolox-l"].sha256 and MODELS["dwpose-l-384"].sha256  # the default pair


@pytest.mark.parametrize("detector, pose", [("yolox-tiny", "dwpose-m-256"),
                                            ("yolox-m", "rtmw-x-384"),
                                            ("yolox-l", "dwpose-t-256")])
def test_each_input_size_is_read_from_the_models_and_lands_points_to_the_pixel(
        tmp_path, detector, pose):
    install(tmp_path, detector, pose)
    engine = load_engine("dwpose", str(tmp_path), (detector, pose))
    width, height = MODELS[pose].input_size
    assert engine.detector.size == MODELS[detector].input_size[::-1]
    assert engine.pose.size == (width, height)
    engine.warm()
    people = render(engine, IMAGE, {"detect_resolution": 0})
    assert len(people.keypoints["people"]) == 2
    first = engine(IMAGE)[0]
    # Box A: centre (250, 250), padded and aspect-fixed scale (375, 500), for both aspects.
    nose = (width // 2 / width * 375 + 62.5, height // 4 / height * 500)
    assert np.allclose(first.body[0, :2], nose, atol=1e-6)
    right = (2 * width // 3 / width * 375 + 62.5, height // 3 / height * 500)
    assert np.allclose(first.body[2, :2], right, atol=1e-6)
    assert first.body[1, 2] == 1.0  # the neck, from both shoulders


@pytest.mark.parametrize("batch, crops_per_call", [("batch", 3), (2, 2), (1, 1)])
def test_all_people_of_a_picture_share_one_call_when_the_batch_is_dynamic(
        tmp_path, batch, crops_per_call):
    install(tmp_path, "yolox-l", "dwpose-l-384", boxes=BOXES, batch=batch, mark_batch=True)
    engine = DWPoseEngine(str(tmp_path))
    people = engine(IMAGE)
    assert len(people) == 3
    # The stand-in adds 0.01 per crop of its call to every score: all three say the same.
    for person in people:
        assert person.body[0, 2] == pytest.approx(0.9 + 0.01 * crops_per_call, abs=1e-6)
    assert engine.pose.batch == (None if batch == "batch" else batch)


def test_providers_are_the_best_the_build_has_and_cpu_always_last():
    cpu = "CPUExecutionProvider"
    assert choose_providers([cpu]) == [cpu]
    assert choose_providers([cpu, "CUDAExecutionProvider", "TensorrtExecutionProvider"]) == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", cpu]
    assert choose_providers(["CoreMLExecutionProvider", cpu, "AzureExecutionProvider"]) == [
        "CoreMLExecutionProvider", cpu]
    assert choose_providers(["DmlExecutionProvider", "OpenVINOExecutionProvider"]) == [
        "OpenVINOExecutionProvider", "DmlExecutionProvider", cpu]
    # TensorRT's built engines are kept beside the models, for the next start.
    assert with_options(["TensorrtExecutionProvider", cpu], "/models") == [
        ("TensorrtExecutionProvider", {"trt_engine_cache_enable": "True",
                                       "trt_engine_cache_path": "/models/tensorrt-cache"}),
        (cpu, {})]


def test_the_engine_names_its_models_and_the_provider_it_runs_on(tmp_path):
    install(tmp_path, "yolox-tiny", "rtmw-l-384")
    engine = DWPoseEngine(str(tmp_path), "yolox-tiny", "rtmw-l-384")
    # This machine's onnxruntime has no accelerator: the sessions run on the CPU.
    assert engine.providers == ["CPUExecutionProvider"]
    assert engine.version == "yolox-tiny+rtmw-l-384@cpu"
    assert render(engine, IMAGE, {}).engine_version == engine.version


def test_an_unknown_model_name_is_refused_naming_the_choices(tmp_path):
    install(tmp_path, "yolox-l", "dwpose-l-384")
    with pytest.raises(ValueError, match="unknown pose model 'dwpose-xl'.*rtmw-x-384"):
        load_engine("dwpose", str(tmp_path), ("yolox-l", "dwpose-xl"))
    with pytest.raises(ValueError, match="unknown detector model 'rtmw-x-384'.*yolox-tiny"):
        DWPoseEngine(str(tmp_path), "rtmw-x-384", "dwpose-l-384")
    with pytest.raises(FileNotFoundError, match="dwpose-m-256.onnx"):
        load_engine("dwpose", str(tmp_path), ("yolox-l", "dwpose-m-256"))


def test_the_worker_warms_its_models_and_readyz_logs_and_results_name_the_provider(
        tmp_path, redis_url, sample_bytes):
    import base64
    import time

    import httpx
    from redis import Redis

    from app.store import apikeys
    from tests.stack import Stack

    models = tmp_path / "models"
    models.mkdir()
    # The sample photo (194 x 259) is seen at 512 x 684, padded to 512 x 704.
    install(models, "yolox-tiny", "dwpose-s-256", boxes=[(100.0, 40.0, 400.0, 660.0)])
    env = {"POSEHOOK_ENGINE": "dwpose", "DWPOSE_MODEL_DIR": str(models),
           "POSEHOOK_DWPOSE_DETECTOR": "yolox-tiny", "POSEHOOK_DWPOSE_POSE": "dwpose-s-256"}
    with Stack(redis_url, tmp_path / "stack", env=env) as stack:
        deadline = time.time() + 60
        while (ready := httpx.get(stack.url + "/readyz").json()).get("engine") is None:
            assert time.time() < deadline, stack.log("inference")
            time.sleep(0.2)
        assert ready["engine"] == "dwpose:yolox-tiny+dwpose-s-256@cpu"
        assert "yolox-tiny+dwpose-s-256@cpu loaded and warmed" in stack.log("inference")
        key = apikeys.create(Redis.from_url(redis_url, decode_responses=True), "models")[1]
        uri = "data:image/jpeg;base64," + base64.b64encode(sample_bytes).decode()
        answer = httpx.post(stack.url + "/v1/requests", headers={
            "Authorization": f"Key {key}", "Prefer": "wait=60"}, timeout=90, json={"input": {
                "image_url": uri, "return_keypoints": True,
                "keypoints_format": "coco_wholebody"}})
        record = answer.json()
        assert record["status"] == "COMPLETED", record
        assert record["engine"] == ready["engine"]
        assert len(record["output"]["keypoints"]["people"]) == 1


@pytest.mark.parametrize("pose", ["dwpose-l-256", "rtmw-l-384"])
def test_a_bright_spot_is_found_where_it_is_through_the_real_crop_of_each_size(tmp_path, pose):
    install(tmp_path, "yolox-l", "dwpose-l-384")
    onnx_models.locator(str(tmp_path / MODELS[pose].file), MODELS[pose].input_size)
    engine = DWPoseEngine(str(tmp_path), "yolox-l", pose)
    image = IMAGE.copy()
    image[299:302, 199:202] = 255  # a white dot at (200, 300), inside box A only
    first, second = engine(image)
    width = engine.pose.size[0]
    crop_pixel = 375 / width  # box A's padded width over the model's input width
    found = np.concatenate([first.body[[0, 2, 5]], first.left_hand, first.face])
    assert np.abs(found[:, :2] - (200, 300)).max() <= crop_pixel + 1.5
    assert (found[:, 2] > 0.3).all()
    assert (second.body[:, 2] <= 0.3).all()  # no spot in box B: nothing found there
