"""Where the hub may send requests: the outbound address guard (server-side request forgery).

A connection's API root, token URL and any URL in its options are typed in by an admin; the worker sends
credentials there and ops read what comes back. Nothing may therefore reach the hub's own network by
default: a destination whose host resolves to a loopback, link-local (``169.254.0.0/16`` with the cloud
metadata address ``169.254.169.254``, ``fe80::/10``), private (RFC 1918, ``fc00::/7``), shared CGNAT
(``100.64.0.0/10``, RFC 6598), unspecified, multicast, reserved or otherwise not globally routable address —
also written IPv4-mapped (``::ffff:127.0.0.1``), 6to4, Teredo or NAT64 — is refused, unless the host name
or a CIDR range containing the address is listed in ``HUB_OUTBOUND_ALLOW`` (comma separated, e.g.
``127.0.0.1,localhost,::1`` for the sandbox demo, ``10.20.0.0/16`` for an on-premises WMS).

The check runs where the socket is opened: :class:`GuardedAdapter` resolves the host once, verifies every
address it resolves to and connects only to those verified addresses, so a DNS answer that changes between
a check and the connection (DNS rebinding) cannot slip through. Through an HTTP proxy the proxy connects,
so :func:`check_url` is run on the target before the request instead. Save-time validation (the admin)
uses :func:`check_url` too.

Address classes follow Python's :mod:`ipaddress` (IANA special-purpose registries, RFC 6890), the
OWASP *Server-Side Request Forgery Prevention Cheat Sheet* (resolve, verify every address, no redirects),
and urllib3's ``HTTPConnection._new_conn`` / ``util.connection.create_connection`` contract (errors map onto
``NameResolutionError`` / ``ConnectTimeoutError`` / ``NewConnectionError`` as urllib3's own do).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from functools import lru_cache
from urllib.parse import urlsplit, urlunsplit

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family

from . import errors

ENV_NAME = "HUB_OUTBOUND_ALLOW"
SCHEMES = ("http", "https")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# special-purpose ranges some Python releases count as global (IANA IPv4 Special-Purpose Address Registry)
_SPECIAL_V4 = [ipaddress.ip_network(n) for n in ("0.0.0.0/8", "192.0.0.0/24", "198.18.0.0/15")]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# --- the allow-list --------------------------------------------------------------------------------
def allow_list_text() -> str:
    """``settings.HUB["OUTBOUND_ALLOW"]`` inside Django, the environment variable outside it (bench scripts)."""
    try:
        from django.conf import settings

        if settings.configured:
            return str((getattr(settings, "HUB", None) or {}).get("OUTBOUND_ALLOW") or "")
    except ImportError:  # pragma: no cover - Django is always installed with the hub
        pass
    return os.environ.get(ENV_NAME, "")


@lru_cache(maxsize=8)
def _parse_allow(text: str) -> tuple[frozenset[str], tuple]:
    hosts, nets = set(), []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            nets.append(ipaddress.ip_network(item.strip("[]"), strict=False))
        except ValueError:
            hosts.add(_norm_host(item))
    return frozenset(hosts), tuple(nets)


def _norm_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()


def host_allowed(host: str) -> bool:
    hosts, _ = _parse_allow(allow_list_text())
    return _norm_host(host) in hosts


def address_allowed(ip: IPAddress) -> bool:
    _, nets = _parse_allow(allow_list_text())
    candidates = [ip] + ([ip.ipv4_mapped] if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else [])
    return any(c.version == net.version and c in net for c in candidates for net in nets)


# --- address classes -------------------------------------------------------------------------------
def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped:
        return ip.ipv4_mapped
    if ip.sixtofour:
        return ip.sixtofour
    if ip.teredo:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is no public destination (``None`` when it is)."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None:
            reason = blocked_reason(inner)
            return f"{reason} (embedded in {ip})" if reason else None
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (cloud metadata lives here)"
    if ip.is_multicast:
        return "a multicast address"
    if ip.version == 4 and ip in _CGNAT:
        return "a shared (CGNAT) address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or (ip.version == 4 and any(ip in net for net in _SPECIAL_V4)):
        return "a reserved address"
    if not ip.is_global:
        return "an address that is not publicly routable"
    return None


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id (fe80::1%eth0)
    except ValueError:
        return None


def display_url(url: str) -> str:
    """``url`` fit for a message people read: no user:password, no query string (API keys, signatures),
    no fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _refuse(host: str, ip, reason: str, url: str = "") -> errors.UnsafeDestinationError:
    where = f"{display_url(url)} " if url else ""
    return errors.UnsafeDestinationError(
        f"outbound request to {where}refused: {host} resolves to {ip}, {reason}; "
        f"add the host or its range to {ENV_NAME} if this destination is intended"
    )


def verify_addresses(host: str, addresses, url: str = "") -> None:
    """Raise :class:`errors.UnsafeDestinationError` unless every address of ``host`` is allowed."""
    if host_allowed(host):
        return
    for text in addresses:
        ip = _ip(str(text))
        if ip is None:
            raise errors.UnsafeDestinationError(f"outbound request to {host}: unexpected address {text!r}")
        reason = blocked_reason(ip)
        if reason and not address_allowed(ip):
            raise _refuse(host, ip, reason, url)


def resolve(host: str, port: int, family: int = socket.AF_UNSPEC) -> list[tuple]:
    """``getaddrinfo`` for a TCP connection (raises ``socket.gaierror``)."""
    return socket.getaddrinfo(_norm_host(host), port, family, socket.SOCK_STREAM)


def check_url(url: str, *, resolve_host: bool = True) -> None:
    """Refuse a URL that is not http(s) or whose host is (or resolves to) a blocked address.

    A host name that does not resolve here passes: nothing can be checked (and nothing connects to it
    from this host); the connection-time guard checks it again when it does resolve."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise errors.UnsafeDestinationError(f"not a usable URL: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise errors.UnsafeDestinationError(f"only http and https URLs are allowed, not {parts.scheme or 'none'!r}")
    host = parts.hostname or ""
    if not host:
        raise errors.UnsafeDestinationError(f"{display_url(url)} has no host")
    if host_allowed(host):
        return
    literal = _ip(host)
    if literal is not None:
        verify_addresses(host, [literal], url)
        return
    if not resolve_host:
        return
    try:
        infos = resolve(host, port)
    except (socket.gaierror, UnicodeError):
        return
    verify_addresses(host, [info[4][0] for info in infos], url)


def connect_tcp(host: str, port: int, timeout: float | None = None) -> socket.socket:
    """A TCP connection for clients that are not HTTP (the Inventory Planner SFTP upload): resolved once,
    every address verified like an HTTP destination, connected only to those addresses."""
    try:
        infos = resolve(host, port)
    except (socket.gaierror, UnicodeError) as exc:
        raise errors.RetryableError(f"{host}:{port} does not resolve: {exc}") from exc
    verify_addresses(host, [info[4][0] for info in infos], f"tcp://{host}:{port}/")
    return _connect_first(infos, timeout, None, None)


# --- connection-time guard ---------------------------------------------------------------------------
class _GuardedConnectionMixin:
    """urllib3 connection that resolves its host once, verifies every address, and connects only to them."""

    def _new_conn(self) -> socket.socket:
        host = self._dns_host
        try:
            infos = resolve(host, self.port, allowed_gai_family())
        except socket.gaierror as e:
            raise NameResolutionError(self.host, self, e) from e
        verify_addresses(self.host, [info[4][0] for info in infos], f"{self._guard_scheme}://{self.host}:{self.port}/")
        try:
            sock = _connect_first(infos, self.timeout, self.source_address, self.socket_options)
        except TimeoutError as e:
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            ) from e
        except OSError as e:
            raise NewConnectionError(self, f"Failed to establish a new connection: {e}") from e
        sys.audit("http.client.connect", self, self.host, self.port)
        return sock


def _connect_first(infos, timeout, source_address, socket_options) -> socket.socket:
    """Connect to the first of the verified addresses that answers (as ``socket.create_connection``)."""
    err: OSError | None = None
    for af, socktype, proto, _canon, sa in infos:
        sock = None
        try:
            sock = socket.socket(af, socktype, proto)
            for opt in socket_options or ():
                sock.setsockopt(*opt)
            if timeout is None or isinstance(timeout, (int, float)):
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sa)
            return sock
        except OSError as exc:
            err = exc
            if sock is not None:
                sock.close()
    raise err if err is not None else OSError("getaddrinfo returned no addresses")


class GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    _guard_scheme = "http"


class GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    _guard_scheme = "https"


class GuardedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """``requests`` transport adapter whose direct connections go only to verified addresses. (Proxied
    requests connect to the proxy; :func:`check_url` covers their target.)"""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": GuardedHTTPConnectionPool,
            "https": GuardedHTTPSConnectionPool,
        }
