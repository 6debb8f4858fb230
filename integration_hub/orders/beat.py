"""Periodic jobs of the order flow (installed by ``manage.py setup_beat``; editable in the admin)."""

from integration_hub.core.beat import Job

SCHEDULE = [
    Job(
        "orders: sweep",
        "orders.sweep",
        every_seconds=30,
        queue="priority",
        kwargs={"workers": 4},
        description="Clears claims of killed workers and dispatches processing of due orders (validate, send, resend, notify).",
    ),
    Job(
        "orders: poll storefront orders",
        "orders.poll_orders",
        every_seconds=60,
        description="Captures storefront orders modified since the stored cursor (catch-up behind the subscription webhook) "
        "and records the returns they carry for the planner.",
    ),
    Job(
        "orders: commercetools SQS relay",
        "orders.consume_sqs",
        every_seconds=30,
        queue="priority",
        description="Long-polls the SQS queue of every commercetools connection with options.relay type SQS; a message is "
        "deleted once the orders it names are in the hub (nothing to do without such a connection).",
    ),
    Job(
        "orders: poll warehouse dispatches",
        "orders.poll_dispatches",
        every_seconds=60,
        description="Records warehouse dispatch confirmations since the stored cursor (behind the dispatch webhook).",
    ),
    Job(
        "orders: resend unacknowledged",
        "orders.resend_unacknowledged",
        every_seconds=120,
        description="Orders sent without acknowledgement past ACK_TIMEOUT_MINUTES raise stuck_order and are resent "
        "(the warehouse deduplicates).",
    ),
    Job(
        "orders: orphaned orders",
        "orders.find_orphans",
        crontab="*/15 * * * *",
        description="Orders in the storefront that never reached the hub or the warehouse raise orphaned_order and are captured / resent.",
    ),
    Job(
        "orders: missing dispatch notifications",
        "orders.find_missing_dispatches",
        every_seconds=300,
        description="Orders dispatched in the warehouse but not shown shipped after DISPATCH_NOTIFY_MINUTES raise "
        "missing_dispatch and are retried.",
    ),
    Job(
        "orders: storefront-side fulfilments",
        "orders.send_fulfilments",
        every_seconds=60,
        description="Reports ship-from-store / click & collect fulfilments to the master until it acknowledges each one.",
    ),
]
