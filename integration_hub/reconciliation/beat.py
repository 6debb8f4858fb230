from integration_hub.core.beat import Job

SCHEDULE = [
    Job(
        name="finance: daily reconciliation reports",
        task="reconciliation.daily_reports",
        crontab="30 5 * * *",
        kwargs={"keep_days": 90},
        queue="default",
        description="Orders shipped-but-open, dispatched-but-unshipped, and stock drift at cost; keeps 90 days.",
    ),
]
