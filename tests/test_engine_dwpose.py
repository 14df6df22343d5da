"""The DWPose pipeline on tiny synthetic ONNX models with known boxes and SimCC peaks."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest

from app.engine import load_engine, render
from app.engine.dwpose import detect, pose
from app.engine.dwpose.pipeline import DWPoseEngine, to_openpose
from tests import onnx_models

IMAGE = np.zeros((480, 1280, 3), dtype=np.uint8)  # letterbox ratio 0.5
BOX_A = (100.0, 50.0, 400.0, 450.0)
BOX_B = (700.0, 100.0, 1000.0, 460.0)


def session(path: str) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])


@pytest.fixture
def model_dir(tmp_path):
    """A DWPOSE_MODEL_DIR with a two-person detector and a constant-peak pose model."""
    rows = [onnx_models.detector_row(BOX_A, 0.5), onnx_models.detector_row(BOX_B, 0.5, 0.8)]
    onnx_models.detector(str(tmp_path / "yolox_l.onnx"), rows)
    sx, sy = onnx_models.peaks({0: (144, 100), 5: (100, 150), 6: (188, 150), 9: (80, 250),
                                91: (60, 300), 112: (220, 300), 23: (130, 90)})
    onnx_models.pose(str(tmp_path / "dw-ll_ucoco_384.onnx"), sx, sy)
    return tmp_path


def test_letterbox_pads_with_114_top_left_and_reports_the_ratio():
    blob, ratio = detect.letterbox(np.full((480, 1280, 3), 7, dtype=np.uint8))
    assert ratio == 0.5 and blob.shape == (1, 3, 640, 640)
    assert blob[0, 0, 0, 0] == 7 and blob[0, 0, 239, 639] == 7 and blob[0, 0, 240, 0] == 114


def test_detector_decodes_known_boxes_and_drops_the_rest(tmp_path):
    rows = [onnx_models.detector_row(BOX_A, 0.5),
            onnx_models.detector_row((110, 60, 410, 460), 0.5, 0.85, stride=16),  # IoU > 0.45
            onnx_models.detector_row(BOX_B, 0.5, 0.25),  # under 0.3
            onnx_models.detector_row((500, 100, 600, 300), 0.5, 0.9, cls=2)]  # not a person
    path = onnx_models.detector(str(tmp_path / "d.onnx"), rows)
    boxes = detect.Detector(session(path))(IMAGE)
    assert boxes.shape == (1, 4)
    assert np.allclose(boxes[0], BOX_A, atol=1e-3)


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 100, 100], [5, 5, 105, 105], [200, 200, 300, 300]], dtype=float)
    assert detect.nms(boxes, np.array([0.9, 0.95, 0.5]), 0.45) == [1, 2]


def test_box_to_center_scale_pads_and_fixes_the_aspect():
    center, scale = pose.box_to_center_scale(np.array(BOX_A))
    assert np.allclose(center, (250, 250)) and np.allclose(scale, (375, 500))
    _, wide = pose.box_to_center_scale(np.array([0, 0, 400, 100]))
    assert np.allclose(wide, (500, 500 / 0.75))


def test_the_affine_crop_maps_the_box_onto_the_input_and_back():
    center, scale = pose.box_to_center_scale(np.array(BOX_A))
    matrix = pose.warp_matrix(center, scale)
    top_left = matrix @ np.array([center[0] - scale[0] / 2, center[1] - scale[1] / 2, 1])
    assert np.allclose(matrix @ np.array([*center, 1]), (144, 192))
    assert np.allclose(top_left, (0, 0), atol=1e-4)
    image = np.zeros((480, 1280, 3), dtype=np.uint8)
    image[299:302, 199:202] = 255  # a dot at (200, 300)
    crop, c, s = pose.crop(image, np.array(BOX_A))
    y, x = np.unravel_index(crop[0].argmax(), crop[0].shape)
    back = pose.to_image(np.array([[[x, y]]], dtype=float), c[None], s[None])[0, 0]
    assert np.abs(back - (200, 300)).max() <= scale[0] / 288 + 1


def test_the_crop_is_normalised_with_dwposes_mean_and_std_in_rgb_order():
    image = np.zeros((480, 1280, 3), dtype=np.uint8)
    image[290:311, 190:211] = (200, 100, 50)  # an RGB patch around (200, 300)
    crop, _, _ = pose.crop(image, np.array(BOX_A))
    matrix = pose.warp_matrix(*pose.box_to_center_scale(np.array(BOX_A)))
    x, y = (matrix @ np.array([200, 300, 1])).round().astype(int)
    expected = (np.array([200, 100, 50]) - (123.675, 116.28, 103.53)) / (58.395, 57.12, 57.375)
    assert np.allclose(crop[:, y, x], expected, atol=1e-4)
    assert np.allclose(crop[:, 0, 0], -np.array((123.675, 116.28, 103.53))
                       / (58.395, 57.12, 57.375), atol=1e-4)  # outside the image: black


def test_simcc_takes_the_smaller_maximum_and_hides_nonpositive_scores():
    sx, sy = onnx_models.peaks({0: (10, 20), 1: (30, 40)}, value_x=0.9, value_y=0.5)
    sx[2], sy[2] = -1.0, -1.0
    locations, scores = pose.simcc_decode(sx[None], sy[None])
    assert np.allclose(locations[0, 0], (10, 20)) and scores[0, 0] == pytest.approx(0.5)
    assert np.allclose(locations[0, 2], (-0.5, -0.5)) and scores[0, 2] <= 0


@pytest.mark.parametrize("batch", ["batch", 1])
def test_the_whole_pipeline_lands_points_to_the_pixel(model_dir, batch):
    if batch == 1:  # a model exported with a fixed batch runs one person at a time
        sx, sy = onnx_models.peaks({0: (144, 100), 5: (100, 150), 6: (188, 150)})
        onnx_models.pose(str(model_dir / "dw-ll_ucoco_384.onnx"), sx, sy, batch=1)
    engine = DWPoseEngine(str(model_dir))
    assert engine.pose.batched is (batch != 1)
    people = engine(IMAGE)
    assert len(people) == 2
    first = people[0]
    # Box A: centre (250, 250), scale (375, 500): x = bx / 288 * 375 + 62.5, y = by / 384 * 500.
    assert np.allclose(first.body[0, :2], (144 / 288 * 375 + 62.5, 100 / 384 * 500))
    assert np.allclose(first.body[2, :2], (188 / 288 * 375 + 62.5, 150 / 384 * 500))  # R shoulder
    assert np.allclose(first.body[5, :2], (100 / 288 * 375 + 62.5, 150 / 384 * 500))  # L shoulder
    assert first.body[1, 2] == 1.0 and np.allclose(first.body[1, :2],
                                                   (first.body[2, :2] + first.body[5, :2]) / 2)
    assert first.body[8, 2] == 0  # nothing emitted for the hips


def test_wholebody_slices_and_remap():
    points = np.arange(133 * 2, dtype=float).reshape(1, 133, 2)
    scores = np.full((1, 133), 0.9)
    person = to_openpose(points, scores)[0]
    # Every OpenPose row from its COCO row, as DWPose's table has it (the neck is inserted).
    coco = {0: 0, 2: 6, 3: 8, 4: 10, 5: 5, 6: 7, 7: 9, 8: 12, 9: 14, 10: 16, 11: 11, 12: 13,
            13: 15, 14: 2, 15: 1, 16: 4, 17: 3}
    for row, source in coco.items():
        assert np.allclose(person.body[row, :2], points[0, source]), row
    assert np.allclose(person.body[1, :2], (points[0, 5] + points[0, 6]) / 2)
    assert np.allclose(person.feet[:, :2], points[0, 17:23])
    assert np.allclose(person.face[:, :2], points[0, 23:91])
    assert np.allclose(person.left_hand[:, :2], points[0, 91:112])
    assert np.allclose(person.right_hand[:, :2], points[0, 112:133])


def test_auto_picks_dwpose_when_its_weights_are_present(model_dir):
    engine = load_engine("auto", str(model_dir))
    assert engine.name == "dwpose"
    rendering = render(engine, IMAGE, {"detect_resolution": 0})
    assert rendering.engine == "dwpose" and len(rendering.keypoints["people"]) == 2
    assert rendering.image.max() > 0


def test_no_person_gives_no_pose(tmp_path):
    onnx_models.detector(str(tmp_path / "yolox_l.onnx"),
                         [onnx_models.detector_row(BOX_A, 0.5, 0.05)])
    onnx_models.pose(str(tmp_path / "dw-ll_ucoco_384.onnx"), *onnx_models.peaks({}))
    assert DWPoseEngine(str(tmp_path))(IMAGE) == []


def test_coco_wholebody_output_is_the_models_own_133_points(model_dir):
    engine = DWPoseEngine(str(model_dir))
    points, scores = engine.pose(IMAGE, engine.detector(IMAGE))
    document = render(engine, IMAGE, {"detect_resolution": 0,
                                      "keypoints_format": "coco_wholebody"}).keypoints
    assert len(document["people"]) == 2
    for person, where, score in zip(document["people"], points, scores, strict=True):
        given = np.array(person["keypoints"]).reshape(133, 3)
        shown = score > 0.3
        assert shown.sum() == 7  # the seven peaks the stand-in model emits
        assert np.allclose(given[shown, :2], where[shown], atol=0.01)
        assert not given[~shown].any()


def test_a_thin_picture_is_posed_by_dwpose_at_most_8192_long(model_dir):
    # 8x1000 at the default detect_resolution would be 512x64000 (64-padded) for YOLOX and
    # the pose crops; the scale is lowered to 8192 long, as for every engine.
    engine = DWPoseEngine(str(model_dir))
    rendering = render(engine, np.zeros((1000, 8, 3), np.uint8), {"return_keypoints": True})
    assert rendering.image.shape == (1000, 8, 3)
    assert (rendering.keypoints["canvas_width"], rendering.keypoints["canvas_height"]) == (8, 1000)
