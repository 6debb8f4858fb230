"""The one patch point for fake connectors: ``connectors.registry.get_connector``.

Every part of the hub gets a connection's connector from the registry, so a fake installed there answers for every
caller (order send, stock push, polls, audits, webhooks) — tests never patch a module's private ``_connector``::

    def test_send(fake_connectors, world):          # the fixture; or install_fakes(monkeypatch) in a helper
        wh = fake_connectors.install(FakeWarehouse(), system_type="wair")
        ...

Rules are tried newest first; a connection no rule matches gets its real connector.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable
from unittest import mock


class FakeConnectors:
    def __init__(self, real: Callable):
        self._real = real
        self._rules: list[tuple[Callable[[Any], bool], Any, tuple[str, ...]]] = []

    def install(
        self,
        fake,
        *,
        connection=None,
        system_type=None,
        when: Callable[[Any], bool] | None = None,
        real: tuple[str, ...] = (),
    ):
        """Answer with ``fake`` for ``connection`` (a Connection or several, matched by pk), for connections of
        ``system_type`` (a name or several), for those ``when(connection)`` is true — or, with none given, for every
        connection. ``fake`` may be a ``callable(connection) -> connector`` wrapped in :func:`per_connection`.
        ``real``: attribute names the real connector keeps serving (its own code, no remote call — e.g.
        ``verify_webhook``, ``parse_order_webhook``), everything else is the fake's. Returns ``fake``."""
        checks = []
        if connection is not None:
            pks = {c.pk for c in (connection if isinstance(connection, (list, tuple, set)) else [connection])}
            checks.append(lambda c: c.pk in pks)
        if system_type is not None:
            types = {system_type} if isinstance(system_type, str) else set(system_type)
            checks.append(lambda c: c.system_type in types)
        if when is not None:
            checks.append(when)
        self._rules.append((lambda c: all(check(c) for check in checks), fake, tuple(real)))
        return fake

    def clear(self) -> None:
        self._rules.clear()

    def __call__(self, connection, fresh: bool = False):
        for matches, fake, real in reversed(self._rules):
            if matches(connection):
                built = fake.build(connection) if isinstance(fake, per_connection) else fake
                return _Partly(built, lambda: self._real(connection, fresh), real) if real else built
        return self._real(connection, fresh)


class _Partly:
    """A fake that leaves some attributes to the real connector (built on first use of one of them)."""

    def __init__(self, fake, real_factory: Callable[[], Any], names: tuple[str, ...]):
        object.__setattr__(self, "_fake", fake)
        object.__setattr__(self, "_real_factory", real_factory)
        object.__setattr__(self, "_names", names)

    def __getattr__(self, name):
        if name in self._names:
            return getattr(self._real_factory(), name)
        return getattr(self._fake, name)

    def __setattr__(self, name, value):
        setattr(self._fake, name, value)


class per_connection:
    """A fake built per call from the connection (``install(per_connection(lambda conn: Fake(conn)))``)."""

    def __init__(self, build: Callable[[Any], Any]):
        self.build = build


def install_fakes(monkeypatch) -> FakeConnectors:
    """The :class:`FakeConnectors` patched in for this test, patched in now (through ``monkeypatch``, so it is undone
    with the test's other patches, in order) if it is not yet. What the ``fake_connectors`` fixture returns."""
    import connectors.registry as registry

    current = registry.get_connector
    if isinstance(current, FakeConnectors):
        return current
    fakes = FakeConnectors(current)
    monkeypatch.setattr(registry, "get_connector", fakes)
    return fakes


@contextlib.contextmanager
def fake_connectors():
    """Patch ``connectors.registry.get_connector`` for the block; yields the :class:`FakeConnectors` to install on."""
    import connectors.registry as registry

    fakes = FakeConnectors(registry.get_connector)
    with mock.patch.object(registry, "get_connector", fakes):
        yield fakes
