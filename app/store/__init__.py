"""Redis-backed records: the only package that talks to Redis.

No Flask here. Every function takes the Redis client first; the records' client decodes
responses to ``str`` (RQ keeps its own byte-level connection, see ``app.queues``). Every Lua
script is made once with :func:`script` and opens with a comment naming its KEYS and ARGV.

Where a request is, by state (``app/models.py`` has the table of allowed moves; the
transition script in ``app/store/requests.py`` keeps these sets in the same step):

| state       | queued (position) | leases (expiry) | events-owed (since) |
|-------------|-------------------|-----------------|---------------------|
| IN_QUEUE    | member            | —               | —                   |
| IN_PROGRESS | —                 | member          | —                   |
| COMPLETED   | —                 | —               | member until its event is fanned out |
| FAILED      | —                 | —               | member until its event is fanned out |
| CANCELLED   | —                 | —               | member until its event is fanned out |

``queued`` gives queue positions and lets the sweeper find a queued request whose job was
lost; ``leases`` lets it find a running one whose worker died (local) or whose callback never
came (fal); ``events-owed`` lets it announce a terminal event a crash left unsent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from redis import Redis
from redis.client import Pipeline
from redis.commands.core import Script

T = TypeVar("T")


def connect(url: str, sentinels: tuple[str, ...] = (), master: str = "") -> Redis:
    """Return a Redis client for records (str responses, short timeouts).

    With ``sentinels`` the client asks them for ``master``'s address, and again after a
    failover; ``url`` then gives only the database and credentials.
    """
    options = {"decode_responses": True, "socket_timeout": 10, "socket_connect_timeout": 5,
               "health_check_interval": 30}
    if sentinels:
        return sentinel_master(url, sentinels, master, **options)
    return Redis.from_url(url, **options)


def sentinel_master(url: str, sentinels: tuple[str, ...], master: str, **options) -> Redis:
    """Return a client of the master that ``sentinels`` name (redis-py's Sentinel support)."""
    from redis.connection import parse_url
    from redis.sentinel import Sentinel

    parsed = parse_url(url)
    auth = {k: parsed[k] for k in ("db", "username", "password") if parsed.get(k) is not None}
    addresses = [(host, int(port)) for host, _, port in (s.rpartition(":") for s in sentinels)]
    found = Sentinel(addresses, sentinel_kwargs={"socket_timeout": 2,
                                                 "socket_connect_timeout": 2})
    return found.master_for(master, **options, **auth)


def script(source: str) -> Script:
    """Return a Lua script, loaded once per server and run by SHA (``script(keys, args, r)``)."""
    return Script(None, source.encode())  # type: ignore[arg-type] - bound at each call


def one_round_trip(r: Redis, write: Callable[[Pipeline], T]) -> T:
    """Queue ``write``'s commands on a pipeline of ``r``, send them at once; return its result.

    For another library's writes that take a pipeline (RQ's enqueue).
    """
    with r.pipeline() as pipe:
        result = write(pipe)
        pipe.execute()
        return result


def reachable(r: Redis) -> bool:
    """Return True when Redis answers (raises when it does not)."""
    return bool(r.ping())
