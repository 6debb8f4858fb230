import os
import socket
from datetime import UTC, datetime

from celery import shared_task
from django.utils import timezone

from .models import Heartbeat


@shared_task(name="core.heartbeat", ignore_result=True)
def heartbeat(name: str = "worker") -> str:
    """Record that a worker is consuming tasks (beat sends this every minute), and whether it runs degraded
    (``detail["degraded"]``, shown on the dashboard: e.g. the rate limiter without Redis)."""
    from connectors import ratelimit

    detail = {"host": socket.gethostname(), "pid": os.getpid()}
    down = ratelimit.fallback_status()
    if down:
        detail["degraded"] = (
            f"rate limiter without Redis since {datetime.fromtimestamp(down['since'], UTC):%H:%M:%S} UTC "
            f"(per-host limits): {down['reason']}"
        )
    Heartbeat.objects.update_or_create(name=name, defaults={"at": timezone.now(), "detail": detail})
    return name
