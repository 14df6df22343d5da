"""RQ's settings for ``rq worker -c app.rq_settings``: the Redis every other process uses.

RQ's command line takes a URL or a settings module; only the module can name sentinels
(RQ's ``SENTINEL`` dict, built into a ``Sentinel(...).master_for(...)`` by RQ itself). With
``REDIS_SENTINELS`` set, the worker asks the sentinels for the master; else it uses REDIS_URL.
"""

from __future__ import annotations

from redis.connection import parse_url

from app.config import load_settings

_settings = load_settings()

if _settings.redis_sentinels:
    _auth = parse_url(_settings.redis_url)
    SENTINEL = {
        "INSTANCES": [(host, int(port)) for host, _, port in
                      (address.rpartition(":") for address in _settings.redis_sentinels)],
        "MASTER_NAME": _settings.redis_sentinel_master,
        "DB": _auth.get("db", 0),
        "USERNAME": _auth.get("username"),
        "PASSWORD": _auth.get("password"),
        "CONNECTION_KWARGS": {"socket_connect_timeout": 5, "health_check_interval": 30},
        "SENTINEL_KWARGS": {"socket_timeout": 2, "socket_connect_timeout": 2},
    }
else:
    REDIS_URL = _settings.redis_url
