"""RQ job functions: one module per step, each function named like its module, taking ids.

::

    submit(request_id)      queue "submit"     hand the request to its provider
    infer(request_id)       queue "inference"  engine → stored image → signed callback to us
    settle(callback_id)     queue "settle"     request → COMPLETED/FAILED once; emit events
    deliver_all(items)      queue "delivery"   a fan-out's first attempts, side by side
    deliver(delivery_id)    "delivery-retry"   one signed POST to a subscriber: a retry or
                                               the sweeper's ("delivery": a redelivery)
    sweep()                 queue "maintenance" (every 30 s) heal anything a crash left behind

Jobs re-read state from Redis and are safe to run twice; state changes are
compare-and-set in ``app.store``.
"""
