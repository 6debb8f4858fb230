"""Periodic jobs of the stock engine (installed by ``manage.py setup_beat``; editable in the admin)."""

from integration_hub.core.beat import Job

SCHEDULE = [
    Job(
        "stock: sweep pending pushes",
        "inventory.sweep_pending",
        every_seconds=30,
        description="Frees claims of killed workers and re-dispatches pending pushes left behind (broker outage, "
        "lost nudge, back-off expired).",
    ),
    Job(
        "stock: poll inventory masters",
        "inventory.poll_masters",
        every_seconds=60,
        description="Fetches stock changes since the stored cursor from every enabled inventory master (backs up the webhooks).",
    ),
    Job(
        "stock: nightly master snapshot",
        "inventory.resync_masters",
        crontab="10 3 * * *",
        description="Applies every master's full stock snapshot: the safety net for changes both webhooks and the feed missed.",
    ),
    Job(
        "stock: expire old holds",
        "inventory.expire_holds",
        every_seconds=120,
        description="Releases acknowledged order holds older than the masters' feed lag (HUB_HOLD_MAX_SECONDS) and records them.",
    ),
    Job(
        "stock: repair sweep",
        "inventory.repair_sweep",
        every_seconds=120,
        description="Light drift check in normal operation: reads back up to 500 pairs per channel (least recently "
        "seen first) and re-pushes the ones the storefront changed by itself.",
    ),
    Job(
        "stock: import outcomes",
        "inventory.settle_imports",
        every_seconds=60,
        description="Reads the outcomes of full loads sent through a storefront's bulk import (commercetools Import "
        "API): confirms imported pairs, files exception records for refused ones.",
    ),
    Job(
        "stock: drift check",
        "inventory.drift_check",
        crontab="20 */6 * * *",
        description="Reads every storefront quantity back and raises stock_drift where it differs from hub ATS; queues repairs.",
    ),
]
