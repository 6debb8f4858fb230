"""Shared test support, one home per concept (issue 15):

- :mod:`.sandbox` — the one client of the sandbox's HTTP control API (control actions, faults, stats, reset, state);
- :mod:`.factories` — connections of each system type, channel + location + stock rule, items, mappings, orders,
  stock levels, and the one :class:`~tests.support.factories.World` builder;
- :mod:`.fakes` — the one patch point for fake connectors (``connectors.registry.get_connector``);
- :mod:`.tasks` — :func:`~tests.support.tasks.trap_tasks`, which records what is enqueued (``core.nudge.enqueue``,
  ``Task.apply_async`` / ``delay``, ``Celery.send_task``) without running it.
"""
