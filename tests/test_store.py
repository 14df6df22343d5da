"""The store's costs: what a call reads, counted on a real Redis connection (not timed)."""

from __future__ import annotations

from collections import Counter

from redis import Redis

from app.models import Status
from app.store import requests as store


class CountingRedis(Redis):
    """A real client that counts the commands it sends, pipelined ones included."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: Counter[str] = Counter()
        self.trips: list[tuple[str, ...]] = []
        """The commands of each round trip (a pipeline's together), in order."""

    def execute_command(self, *args, **options):
        self.calls[str(args[0]).upper()] += 1
        self.trips.append((str(args[0]).upper(),))
        return super().execute_command(*args, **options)

    def pipeline(self, transaction=True, shard_hint=None):
        pipe = super().pipeline(transaction, shard_hint)
        sent, execute = pipe.pipeline_execute_command, pipe.execute
        queued: list[str] = []

        def counted(*args, **options):
            self.calls[str(args[0]).upper()] += 1
            queued.append(str(args[0]).upper())
            return sent(*args, **options)

        def executed(*args, **kwargs):
            self.trips.append(tuple(queued))
            queued.clear()
            return execute(*args, **kwargs)

        pipe.pipeline_execute_command, pipe.execute = counted, executed
        return pipe


def test_a_filtered_page_reads_what_it_returns_not_every_record(redis_url, redis):
    ids = [store.create(redis, key_id="k", input={"image_url": "x"}, provider="local")[0].id
           for _ in range(300)]
    done = ids[10], ids[150], ids[290]
    for request_id in done:
        assert store.transition(redis, request_id, Status.COMPLETED, (Status.IN_QUEUE,),
                                {"output": {}}, announce=False) is not None
    counting = CountingRedis.from_url(redis_url, decode_responses=True)
    page, cursor = store.list_for_key(counting, "k", status="COMPLETED", limit=2)
    assert [r.id for r in page] == [ids[290], ids[150]] and cursor
    assert counting.calls["HGETALL"] <= 3, counting.calls  # 300 records, a page of 2
    rest, end = store.list_for_key(counting, "k", status="COMPLETED", limit=2, cursor=cursor)
    assert [r.id for r in rest] == [ids[10]] and end is None
    queued, _ = store.list_for_key(redis, "k", status="IN_QUEUE", limit=500)
    assert len(queued) == 297 and not set(done) & {r.id for r in queued}
    counting.close()


def test_scripts_sent_together_run_once_each_even_when_one_was_never_loaded(redis):
    """run_calls sends scripts by SHA in one round trip: one the server lacks (here a new
    one) runs again alone after loading, and the others are not run a second time."""
    import secrets

    from app.store import Call, run_calls, script

    counter = "posehook:test:run-calls"
    known = script("-- KEYS[1] a counter\nreturn redis.call('INCR', KEYS[1])")
    assert known([counter], [], redis) == 1  # loaded now
    fresh = script(f"-- never loaded ({secrets.token_hex(8)})\nreturn ARGV[1]")
    calls = [Call(fresh, [], ["first"]), Call(known, [counter], [])]
    assert run_calls(redis, calls) == ["first", 2]
    assert redis.get(counter) == "2"
