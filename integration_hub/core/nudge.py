"""Enqueue a Celery task by its registered name: the one way domain code asks a worker to do something.

Task names (``"orders.process"``, ``"inventory.push_pending"``, …) are stable strings, so a service module never
imports its app's ``tasks`` module to nudge a worker (``tasks`` imports ``services``, not the other way round: no
services ↔ tasks cycles). Queues still come from :mod:`integration_hub.core.queues` (the router applies to tasks sent
by name as well), and an explicit ``queue=`` still wins.

In eager mode (``CELERY_TASK_ALWAYS_EAGER``) the task runs here, in-process, exactly as ``apply_async`` would run it.
Tests trap what is enqueued by patching :func:`enqueue` (``tests/support``), the one patch point.
"""

from __future__ import annotations

from integration_hub.celery import app


def enqueue(name: str, *, args=(), kwargs=None, **options):
    """Send task ``name`` with ``args`` / ``kwargs`` and Celery ``options`` (``countdown``, ``queue``, ``retry``,
    ``expires``, …). Returns the ``AsyncResult`` (an ``EagerResult`` in eager mode). Raises what the broker raises:
    callers that must not fail over a nudge catch it themselves."""
    if app.conf.task_always_eager:
        if name not in app.tasks:
            app.loader.import_default_modules()  # runs autodiscovery, as a worker does at start
        return app.tasks[name].apply_async(args=args, kwargs=kwargs or {}, **options)
    return app.send_task(name, args=args, kwargs=kwargs or {}, **options)
