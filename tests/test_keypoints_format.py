"""keypoints_format: OpenPose JSON by default, or 133 COCO-WholeBody points a person."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from app.engine import KEYPOINTS_FORMATS, load_engine, render
from app.engine.layout import WHOLEBODY_PARTS
from app.engine.wholebody_json import from_wholebody
from app.images import decode_image
from app.schemas import KEYPOINTS_FORMATS as WEB_FORMATS
from app.schemas import PoseInputSchema
from tests.conftest import SAMPLE, TWO_PEOPLE
from tests.contract import check

LIMIT = 40_000_000
# OpenPose-18 row -> COCO-WholeBody index, written out from COCO's names (the neck has none).
OPENPOSE_TO_COCO = {0: 0, 2: 6, 3: 8, 4: 10, 5: 5, 6: 7, 7: 9, 8: 12, 9: 14, 10: 16, 11: 11,
                    12: 13, 13: 15, 14: 2, 15: 1, 16: 4, 17: 3}


@pytest.fixture(scope="module")
def engine():
    return load_engine("mediapipe")


@pytest.fixture(scope="module")
def photo():
    """The sample photo (194 x 259, one woman facing the camera) as RGB."""
    return decode_image(SAMPLE.read_bytes(), max_pixels=LIMIT)


def both(engine, image, **options):
    """Render the picture in both formats; return (openpose people, (N, 133, 3) arrays)."""
    openpose = render(engine, image, {**options, "keypoints_format": "openpose"}).keypoints
    whole = render(engine, image, {**options, "keypoints_format": "coco_wholebody"}).keypoints
    points = [np.array(p["keypoints"]).reshape(133, 3) for p in whole["people"]]
    return openpose, whole, points


def test_the_web_and_the_engine_know_the_same_formats_and_openpose_is_the_default(engine, photo):
    assert WEB_FORMATS == KEYPOINTS_FORMATS == ("openpose", "coco_wholebody")
    assert "keypoints_format" not in PoseInputSchema().load({"image_url": "x"})
    assert "pose_keypoints_2d" in render(engine, photo, {}).keypoints["people"][0]
    with pytest.raises(ValueError, match="keypoints_format"):
        render(engine, photo, {"keypoints_format": "coco"})


def test_each_openpose_point_is_at_its_coco_wholebody_index(engine, photo):
    openpose, whole, points = both(engine, photo)
    assert whole["format"] == "coco_wholebody"
    assert whole["parts"] == ["body", "feet", "face", "left_hand", "right_hand"]
    assert (whole["canvas_width"], whole["canvas_height"]) == (194, 259)
    person, wb = openpose["people"][0], points[0]
    assert whole["people"][0]["bbox"] == person["bbox"]
    assert whole["people"][0]["score"] == person["score"]
    body = np.array(person["pose_keypoints_2d"]).reshape(18, 3)
    for row, index in OPENPOSE_TO_COCO.items():
        assert np.array_equal(wb[index], body[row]), (row, index)
    assert np.array_equal(wb[17:23].ravel(), person["foot_keypoints_2d"])
    assert np.array_equal(wb[23:91].ravel(), person["face_keypoints_2d"][:68 * 3])
    assert np.array_equal(wb[91:112].ravel(), person["hand_left_keypoints_2d"])
    assert np.array_equal(wb[112:133].ravel(), person["hand_right_keypoints_2d"])
    # She faces the camera: her left (COCO's 5, 7) is on the picture's right of her right.
    assert wb[5, 0] > wb[6, 0] and wb[7, 0] > wb[8, 0] and wb[1, 0] > wb[2, 0]
    assert wb[0, 1] < wb[5, 1] < wb[11, 1] < wb[13, 1] < wb[15, 1]  # nose to ankles, downwards
    assert (wb[23:91, 2] > 0).all()  # her face, all 68


def test_two_people_come_out_as_two_wholebody_people_at_the_output_size(engine):
    pair = decode_image(TWO_PEOPLE.read_bytes(), max_pixels=LIMIT)
    openpose, whole, points = both(engine, pair, image_resolution=518)
    assert len(points) == len(openpose["people"]) == 2
    assert whole["canvas_height"] == 518 and whole["canvas_width"] == openpose["canvas_width"]
    for person, wb in zip(openpose["people"], points, strict=True):
        assert np.array_equal(wb[0], person["pose_keypoints_2d"][:3])


def test_a_part_not_drawn_is_zero_and_not_named(engine, photo):
    _, whole, points = both(engine, photo, include_face=False, include_hands=False)
    assert whole["parts"] == ["body", "feet"]
    assert not points[0][23:].any()
    assert (points[0][:17, 2] > 0.3).sum() >= 12
    _, hands_only, points = both(engine, photo, draw_mode="hand-pose")
    assert hands_only["parts"] == ["left_hand", "right_hand"] and not points[0][:91].any()


def test_wholebody_json_reads_back_into_the_same_people(engine, photo):
    people = engine(photo)
    document = render(engine, photo, {"keypoints_format": "coco_wholebody",
                                      "detect_resolution": 0}).keypoints
    back = from_wholebody(document)[0]
    assert back.score == document["people"][0]["score"]  # the engine's, not the body's mean
    for part in WHOLEBODY_PARTS:
        original, read = getattr(people[0], part), getattr(back, part)
        sure = original[:, 2] > 0.3
        assert np.allclose(read[sure, :2], original[sure, :2], atol=0.01), part
        assert np.allclose(read[sure, 2], original[sure, 2], atol=1e-4), part
        assert not read[original[:, 2] == 0].any(), part  # not found stays not found
    assert (people[0].body[:, 2] > 0.3).sum() >= 12 and (people[0].face[:, 2] > 0.3).all()
    assert back.body[1, 2] == people[0].body[1, 2] == 1.0  # the neck, made again


def test_the_api_takes_the_format_and_answers_as_the_contract_says(http, sample_bytes,
                                                                    run_jobs):
    uri = "data:image/jpeg;base64," + base64.b64encode(sample_bytes).decode()
    refused = http.post("/v1/requests", json={"input": {"image_url": uri,
                                                        "keypoints_format": "coco-133"}})
    assert refused.status_code == 422 and "keypoints_format" in refused.text
    assert "coco_wholebody" in refused.text  # the message says what to send instead
    answer = http.post("/v1/requests", json={"input": {
        "image_url": uri, "return_keypoints": True, "keypoints_format": "coco_wholebody"}})
    assert answer.status_code == 202, answer.text
    run_jobs()
    record = http.get(f"/v1/requests/{answer.json()['request_id']}")
    check(record, "GET", "/v1/requests/{request_id}")
    keypoints = record.json()["output"]["keypoints"]
    assert keypoints["format"] == "coco_wholebody"
    assert len(keypoints["people"]) == 1 and len(keypoints["people"][0]["keypoints"]) == 399
