"""The Celery application. Tasks live in each sub-app's ``tasks.py`` and are discovered here."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "integration_hub.settings")
os.umask(0o077)  # worker and beat files (broker SQLite, beat schedule, logs) are owner-only

app = Celery("integration_hub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
