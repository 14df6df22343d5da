"""File storage against both backends: the local directory and a real S3 server (moto).

Every test marked ``BOTH`` runs twice, through the same boto3 calls production makes.
"""

from __future__ import annotations

import io
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image

from app.config import ConfigError, load_settings
from app.models import Status
from app.store import requests as store
from tests.contract import check, check_served

BOTH = pytest.mark.parametrize("storage_kind", ["local", "s3"], indirect=True)
SERVED = ("Content-Type", "Content-Length", "Content-Disposition", "Cache-Control", "ETag",
          "Last-Modified", "X-Content-Type-Options", "Content-Security-Policy")


def upload(http, data: bytes, name: str = "me.jpg") -> dict:
    answer = http.post("/v1/files", content=data, params={"file_name": name},
                       headers={"Content-Type": "image/jpeg"})
    assert answer.status_code == 201, answer.text
    return answer.json()


@BOTH
def test_an_upload_is_served_back_with_the_same_headers_by_either_storage(
        http, services, sample_bytes, storage_kind):
    from app.storage import LocalStorage
    from app.storage_s3 import S3Storage

    assert isinstance(services.storage, S3Storage if storage_kind == "s3" else LocalStorage)
    stored = upload(http, sample_bytes, "ünï cödé.jpg")
    served = httpx.get(stored["url"])
    assert served.status_code == 200 and served.content == sample_bytes
    for header in SERVED:
        assert served.headers.get(header), header
    assert served.headers["Content-Type"] == "image/jpeg"
    assert served.headers["Content-Length"] == str(len(sample_bytes))
    assert "filename*=UTF-8''%C3%BCn%C3%AF%20c%C3%B6d%C3%A9.jpg" in served.headers[
        "Content-Disposition"]
    assert "max-age=86400" in served.headers["Cache-Control"]
    again = httpx.get(stored["url"], headers={"If-None-Match": served.headers["ETag"]})
    assert again.status_code == 304 and again.content == b""
    part = httpx.get(stored["url"], headers={"Range": "bytes=100-109"})
    assert part.status_code == 206 and part.content == sample_bytes[100:110]
    assert part.headers["Content-Range"] == f"bytes 100-109/{len(sample_bytes)}"
    beyond = httpx.get(stored["url"], headers={"Range": f"bytes={len(sample_bytes)}-"})
    assert beyond.status_code == 416
    assert beyond.headers["Content-Range"] == f"bytes */{len(sample_bytes)}"
    missing = httpx.get(stored["url"].replace(stored["key"][:8], "A" * 8))
    assert missing.status_code == 404
    for answer in (served, again, part, beyond, missing):  # each as openapi.yaml says
        check_served(answer, "GET", "/files/{key}")


@BOTH
def test_a_video_and_a_json_file_are_served_as_openapi_yaml_says(http, live, api_key,
                                                                 tmp_path):
    from tests.test_fal_storage import upload as fal_upload
    from tests.videos import make_video

    clip = make_video(tmp_path / "clip.mp4", frames=4).read_bytes()
    video = httpx.get(upload(http, clip, "clip.mp4")["url"])
    assert video.status_code == 200 and video.headers["Content-Type"] == "video/mp4"
    keypoints = httpx.get(fal_upload(live, api_key, b'{"people": []}', "application/json"))
    assert keypoints.headers["Content-Type"] == "application/json"
    for answer in (video, keypoints):
        check_served(answer, "GET", "/files/{key}")


@BOTH
def test_an_uploaded_file_in_a_pose_image_out_in_the_same_storage(http, services, sample_bytes,
                                                                  run_jobs):
    stored = upload(http, sample_bytes)
    request_id = http.post("/v1/requests", json={"input": {"image_url": stored["url"]}}
                           ).json()["request_id"]
    run_jobs()
    record = store.get(services.redis, request_id)
    assert record.status is Status.COMPLETED, record.error
    image = record.output["image"]
    key = services.storage.key_from_url(image["url"])
    assert key and services.storage.stat(key).file_size == image["file_size"]
    picture = Image.open(io.BytesIO(httpx.get(image["url"]).content))
    assert picture.format == "PNG" and picture.size == (194, 259)


@BOTH
def test_a_data_uri_input_is_kept_in_the_storage_and_a_gone_file_is_refused(
        http, services, sample_bytes, run_jobs):
    import base64

    uri = "data:image/jpeg;base64," + base64.b64encode(sample_bytes).decode()
    request_id = http.post("/v1/requests", json={"input": {"image_url": uri}}
                           ).json()["request_id"]
    record = store.get(services.redis, request_id)
    key = services.storage.key_from_url(record.input["image_url"])
    assert services.storage.read(key) == sample_bytes
    assert services.storage.delete([key]) == 1 and services.storage.read(key) is None
    assert services.storage.delete([key]) == 1  # deleting twice is no error
    refused = http.post("/v1/requests", json={"input": {"image_url": record.input["image_url"]}})
    assert refused.status_code == 422 and "no such uploaded file" in refused.text


@pytest.mark.parametrize("storage_kind", ["s3"], indirect=True)
def test_with_presign_files_redirect_to_a_signed_url_that_expires(
        http, services, sample_bytes, overrides, redis):
    from app import create_app

    app = create_app({**overrides, "storage_presign": 90})
    stored = upload(http, sample_bytes)  # stored by the streaming app, same bucket
    client = app.test_client()
    answer = client.get(f"/files/{stored['key']}")
    assert answer.status_code == 307 and "no-store" in answer.headers["Cache-Control"]
    check(answer, "GET", "/files/{key}")
    signed = answer.headers["Location"]
    query = parse_qs(urlsplit(signed).query)
    assert query["X-Amz-Expires"] == ["90"] and query["X-Amz-Signature"]
    assert "posehook-secret-never-shown" not in signed
    direct = httpx.get(signed)
    assert direct.status_code == 200 and direct.content == sample_bytes
    # (moto does not check signatures, so a forged one is not tried here: S3 refuses it.)
    assert client.get("/files/" + "B" * 32 + ".jpg").status_code == 404


@pytest.mark.parametrize("changes, message", [
    ({"storage_url": "/var/files"}, "s3://bucket/prefix"),
    ({"storage_url": "s3://No_Such/x"}, "not a valid S3 bucket name"),
    ({"storage_presign": 60}, "needs POSEHOOK_STORAGE_URL"),
    ({"storage_url": "s3://bucket", "storage_presign": 8 * 86400}, "604800"),
    ({"upload_ttl": 0}, "POSEHOOK_UPLOAD_TTL"),
])
def test_storage_settings_are_checked_at_start(changes, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(changes, environ={})


def test_the_s3_url_gives_bucket_and_prefix():
    from app.storage_s3 import parse_s3_url

    assert parse_s3_url("s3://my-bucket/a/b/") == ("my-bucket", "a/b/")
    assert parse_s3_url("s3://my-bucket") == ("my-bucket", "")
