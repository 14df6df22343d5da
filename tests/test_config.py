"""Settings: read from the environment once, validated, with messages that name the variable."""

from __future__ import annotations

import pytest

from app.config import ConfigError, load_settings


def test_defaults_need_no_environment():
    settings = load_settings(environ={})
    assert settings.provider == "local" and settings.max_redirects == 3
    assert settings.max_pixels == 40_000_000 and settings.allow_private_urls is False


def test_environment_is_parsed_by_type():
    settings = load_settings(environ={
        "REDIS_URL": "redis://h:1/2", "POSEHOOK_ALLOW_PRIVATE_URLS": "1",
        "POSEHOOK_ALLOWED_CIDRS": "127.0.0.0/8, 10.0.0.0/8", "POSEHOOK_DOWNLOAD_TIMEOUT": "2.5",
        "POSEHOOK_DELIVERY_SCHEDULE": "0,0.01,0.02"})
    assert settings.redis_url == "redis://h:1/2" and settings.allow_private_urls is True
    assert settings.allowed_cidrs == ("127.0.0.0/8", "10.0.0.0/8")
    assert settings.download_timeout == 2.5 and settings.delivery_schedule == (0, 0.01, 0.02)


@pytest.mark.parametrize("environ, name", [
    ({"POSEHOOK_PROVIDER": "replicate"}, "POSEHOOK_PROVIDER"),
    ({"POSEHOOK_PROVIDER": "fal"}, "FAL_KEY"),
    ({"POSEHOOK_MAX_PIXELS": "many"}, "POSEHOOK_MAX_PIXELS"),
    ({"POSEHOOK_MAX_PIXELS": "0"}, "POSEHOOK_MAX_PIXELS"),
    ({"POSEHOOK_ALLOW_PRIVATE_URLS": "maybe"}, "POSEHOOK_ALLOW_PRIVATE_URLS"),
    ({"POSEHOOK_ENGINE": "openpose"}, "POSEHOOK_ENGINE"),
    ({"POSEHOOK_SWEEP_INTERVAL": "0"}, "POSEHOOK_SWEEP_INTERVAL"),
    ({"POSEHOOK_DWPOSE_DETECTOR": "yolox-x"}, "POSEHOOK_DWPOSE_DETECTOR"),
    ({"POSEHOOK_DWPOSE_POSE": "yolox-l"}, "POSEHOOK_DWPOSE_POSE"),  # a detector, not a pose
])
def test_bad_values_fail_fast_naming_the_variable(environ, name):
    with pytest.raises(ConfigError, match=name):
        load_settings(environ=environ)


def test_overrides_win_over_the_environment():
    settings = load_settings({"max_redirects": 1}, environ={"POSEHOOK_MAX_REDIRECTS": "5"})
    assert settings.max_redirects == 1
