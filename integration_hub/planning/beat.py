"""Periodic jobs of the planning feed (installed by ``manage.py setup_beat``; editable in the admin)."""

from integration_hub.core.beat import Job

SCHEDULE = [
    Job(
        "planning: daily demand feed",
        "planning.push_demand",
        crontab="30 1 * * *",
        description="Sends new and changed demand lines (orders, bundle components, saleable returns) to every planner.",
    ),
    Job(
        "planning: refresh recommendations",
        "planning.refresh_recommendations",
        crontab="30 3 * * *",
        description="Reads replenishment / purchase recommendations back from every planner for the ops page.",
    ),
]
