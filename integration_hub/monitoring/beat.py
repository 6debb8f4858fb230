"""Periodic jobs of monitoring (installed by ``manage.py setup_beat``; editable under Schedules)."""

from integration_hub.core.beat import Job

SCHEDULE = [
    Job(
        "monitoring: sample figures and evaluate alerts",
        "monitoring.tick",
        every_seconds=60,
        description="Computes the hub's figures (queues, lag, late orders, exceptions, failing connections, drift), "
        "keeps them as a sample for the dashboard charts and evaluates the alert rules.",
    ),
    Job(
        "monitoring: send pending notifications",
        "monitoring.deliver_due",
        every_seconds=30,
        description="Sends alert notifications left in the outbox (lost task, retry after back-off).",
    ),
    Job(
        "monitoring: daily alert digest",
        "monitoring.daily_digest",
        crontab="0 7 * * *",
        description="Sends the last 24 hours of alerts to every channel with 'daily digest' set (e.g. a role's email).",
    ),
]
