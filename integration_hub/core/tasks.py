import os
import socket

from celery import shared_task
from django.utils import timezone

from .models import Heartbeat


@shared_task(name="core.heartbeat", ignore_result=True)
def heartbeat(name: str = "worker") -> str:
    """Record that a worker is consuming tasks (beat sends this every minute)."""
    Heartbeat.objects.update_or_create(name=name, defaults={
        "at": timezone.now(), "detail": {"host": socket.gethostname(), "pid": os.getpid()}})
    return name
