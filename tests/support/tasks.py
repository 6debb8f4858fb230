"""A trap for enqueued tasks (as OCA queue_job's ``trap_jobs()``): what the hub asked a worker to do, recorded, not run.

Every way the hub sends a task goes through the trap: :func:`integration_hub.core.nudge.enqueue` (the one way
services nudge a worker, by stable name), ``Task.apply_async`` / ``Task.delay`` and ``Celery.send_task``. Nothing
reaches the broker; nothing runs unless asked::

    def test_kick(task_trap):
        outbox.kick(ORDER)
        assert task_trap.calls("inventory.push_pending") == [{"kwargs": {"max_priority": 0}, "countdown": None,
                                                               "retry": False}]

    with trap_tasks(run=["orders.fetch_orders"]) as trap:   # these run in place, synchronously, when sent
        ...
    trap.run("orders.process")                              # run what was trapped (and what that sends), in order

``calls(name)`` lists, per task name, the keyword arguments each send passed (``args=``, ``kwargs=``, ``countdown=``,
``queue=``, ``retry=`` …, as the call site wrote them, whichever of the three ways it used), the shape a
``mock``'s ``call.kwargs`` has. It is a live list: it grows as tasks are sent and may be cleared by the test.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable
from unittest import mock

NOT_RUN = object()


def _name(task) -> str:
    return task if isinstance(task, str) else task.name


@dataclass
class Sent:
    """One trapped send."""

    name: str
    args: tuple
    kwargs: dict
    options: dict  # countdown, queue, retry, expires, task_id, …
    via: str  # "enqueue" | "apply_async" | "send_task"
    call: dict = field(repr=False)  # the keyword arguments as the caller passed them
    result: Any = field(default=NOT_RUN, repr=False)

    @property
    def ran(self) -> bool:
        return self.result is not NOT_RUN


class _Result:
    """What a trapped send returns in place of an ``AsyncResult``: an id, and the result if it ran in place."""

    def __init__(self, sent: Sent, task_id: str):
        self.id = self.task_id = task_id
        self._sent = sent

    @property
    def result(self):
        return None if self._sent.result is NOT_RUN else self._sent.result

    def get(self, *a, **kw):
        return self.result

    def ready(self) -> bool:
        return self._sent.ran

    def successful(self) -> bool:
        return self._sent.ran


class TaskTrap:
    def __init__(self, *, run: Iterable = (), fail: dict | None = None):
        self.sent: list[Sent] = []
        self._calls: dict[str, list[dict]] = defaultdict(list)
        self._results: dict[str, list] = defaultdict(list)
        self._run = {_name(t) for t in run}
        self._fail: dict[str, BaseException] = {_name(t): e for t, e in (fail or {}).items()}
        self._listeners: list = []

    # --- configuration ----------------------------------------------------------------------------------
    def run_in_place(self, *tasks) -> TaskTrap:
        """Sends of these tasks run the task here, synchronously, when sent (recorded as well)."""
        self._run.update(_name(t) for t in tasks)
        return self

    def fail(self, task, exc: BaseException | None) -> TaskTrap:
        """Sends of ``task`` raise ``exc`` (a broker that refuses the message); ``None`` stops failing them."""
        if exc is None:
            self._fail.pop(_name(task), None)
        else:
            self._fail[_name(task)] = exc
        return self

    def on_send(self, fn) -> TaskTrap:
        """Call ``fn(sent)`` for every send as it is trapped (before a run in place)."""
        self._listeners.append(fn)
        return self

    # --- what was sent ------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return [s.name for s in self.sent]

    def of(self, task) -> list[Sent]:
        return [s for s in self.sent if s.name == _name(task)]

    def calls(self, task) -> list[dict]:
        """The live list of the keyword arguments each send of ``task`` passed."""
        return self._calls[_name(task)]

    def results(self, task) -> list:
        """The live list of the return values of ``task``'s runs in place."""
        return self._results[_name(task)]

    def assert_enqueued(self, task, **match) -> Sent:
        """The last send of ``task`` whose ``kwargs`` contain ``match``; fails listing what was sent otherwise."""
        for s in reversed(self.of(task)):
            if all(s.kwargs.get(k) == v for k, v in match.items()):
                return s
        raise AssertionError(f"{_name(task)} {match or ''} not enqueued; sent: {self.sent}")

    def assert_not_enqueued(self, task) -> None:
        found = self.of(task)
        assert not found, f"{_name(task)} enqueued: {found}"

    def clear(self) -> None:
        self.sent.clear()
        for calls in self._calls.values():
            calls.clear()
        for results in self._results.values():
            results.clear()

    # --- running what was trapped -----------------------------------------------------------------------
    def run(self, task=None, *, max_rounds: int = 20) -> list:
        """Run the trapped sends not run yet (of ``task`` only, if given), in the order sent, and what they send in
        turn (up to ``max_rounds`` waves); their results."""
        out = []
        for _ in range(max_rounds):
            todo = [s for s in self.sent if not s.ran and (task is None or s.name == _name(task))]
            if not todo:
                return out
            out.extend(self._execute(s) for s in todo)
        raise AssertionError(f"tasks still being sent after {max_rounds} rounds: {self.names()}")

    def _execute(self, s: Sent):
        from integration_hub.celery import app

        if s.name not in app.tasks:
            app.loader.import_default_modules()
        s.result = app.tasks[s.name](*s.args, **s.kwargs)
        self._results[s.name].append(s.result)
        return s.result

    # --- the three ways in ------------------------------------------------------------------------------
    def _record(self, name: str, args, kwargs, options: dict, via: str, call: dict):
        if name in self._fail:
            raise self._fail[name]
        s = Sent(name, tuple(args or ()), dict(kwargs or {}), dict(options), via, call)
        self.sent.append(s)
        self._calls[name].append(call)
        for fn in self._listeners:
            fn(s)
        if name in self._run:
            self._execute(s)
        return _Result(s, options.get("task_id") or str(uuid.uuid4()))

    def _enqueue(self, name, *, args=(), kwargs=None, **options):
        call = {
            **({"args": args} if args != () else {}),
            **({"kwargs": kwargs} if kwargs is not None else {}),
            **options,
        }
        return self._record(name, args, kwargs, options, "enqueue", call)

    def _apply_async(self, task, *a, **kw):
        call = {**dict(zip(("args", "kwargs"), a)), **kw}
        options = {k: v for k, v in call.items() if k not in ("args", "kwargs")}
        return self._record(task.name, call.get("args"), call.get("kwargs"), options, "apply_async", call)

    def _send_task(self, app, name, *a, **kw):
        call = {**dict(zip(("args", "kwargs"), a)), **kw}
        options = {k: v for k, v in call.items() if k not in ("args", "kwargs")}
        return self._record(name, call.get("args"), call.get("kwargs"), options, "send_task", call)

    def patches(self) -> list:
        from celery import Celery
        from celery.app.task import Task

        from integration_hub.core import nudge

        trap = self

        def apply_async(task, *a, **kw):
            return trap._apply_async(task, *a, **kw)

        def send_task(app, name, *a, **kw):
            return trap._send_task(app, name, *a, **kw)

        return [
            mock.patch.object(nudge, "enqueue", self._enqueue),
            mock.patch.object(Task, "apply_async", apply_async),
            mock.patch.object(Celery, "send_task", send_task),
        ]


@contextlib.contextmanager
def trap_tasks(*, run: Iterable = (), fail: dict | None = None):
    """Trap every task sent inside the block; yields the :class:`TaskTrap`. ``run``: task names (or tasks) that run in
    place when sent; ``fail``: {task: exception} sends that raise (the broker down)."""
    trap = TaskTrap(run=run, fail=fail)
    with contextlib.ExitStack() as stack:
        for p in trap.patches():
            stack.enter_context(p)
        yield trap
