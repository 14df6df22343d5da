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

    def execute_command(self, *args, **options):
        self.calls[str(args[0]).upper()] += 1
        return super().execute_command(*args, **options)

    def pipeline(self, transaction=True, shard_hint=None):
        pipe = super().pipeline(transaction, shard_hint)
        sent = pipe.pipeline_execute_command

        def counted(*args, **options):
            self.calls[str(args[0]).upper()] += 1
            return sent(*args, **options)

        pipe.pipeline_execute_command = counted
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
