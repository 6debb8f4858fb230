"""Proxy settings from the environment, looked up once per change of the proxy variables instead of on every request.

``requests`` reads the environment's proxies on every request (``Session.merge_environment_settings`` →
``get_environ_proxies``, which walks and decodes the whole of ``os.environ`` twice), and :mod:`connectors.http` asks the
same question again to decide how to guard the destination. With ~90 variables that is ~0.4 ms of CPU per lookup —
a third of the client's CPU per request in the order bench. :func:`environ_proxies` gives the same answer from a
cache keyed by the proxy variables' current values (``*_proxy`` in any case, and ``REQUEST_METHOD``, which
``urllib`` consults) and the URL's scheme and host: setting or clearing a proxy variable is seen by the next request.
:class:`EnvCachedSession` is a ``requests.Session`` whose environment merge uses it.
"""

from __future__ import annotations

import os
import threading
from urllib.parse import urlsplit

import requests
from requests.sessions import merge_setting
from requests.utils import get_environ_proxies

MAX_ENTRIES = 512
_cache: dict[tuple, dict[str, str]] = {}
_lock = threading.Lock()


def _proxy_variables() -> tuple:
    """The environment variables proxy selection reads, with their values. ``os.environ._data`` (CPython's raw
    mapping) is scanned without decoding every entry; the public mapping is the fallback."""
    raw = getattr(os.environ, "_data", None)
    items = raw.items() if isinstance(raw, dict) else os.environ.items()
    out = []
    for k, v in items:
        name = k.decode("latin-1") if isinstance(k, bytes) else k
        if name[-6:].lower() == "_proxy" or name == "REQUEST_METHOD":
            out.append((name, v))
    return tuple(sorted(out))


def environ_proxies(url: str) -> dict[str, str]:
    """``requests.utils.get_environ_proxies(url)``, cached (a copy: callers may change it)."""
    parts = urlsplit(url)
    key = (_proxy_variables(), parts.scheme.lower(), parts.netloc.lower())
    found = _cache.get(key)
    if found is None:
        found = get_environ_proxies(url)
        with _lock:
            if len(_cache) >= MAX_ENTRIES:
                _cache.clear()
            _cache[key] = found
    return dict(found)


class EnvCachedSession(requests.Session):
    """A ``requests.Session`` that reads the environment's proxies through :func:`environ_proxies`. The rest of the
    merge is ``requests``' own (CA bundle variables, then the session's settings)."""

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        if not self.trust_env or proxies is None or proxies.get("no_proxy"):  # requests' own path
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        for k, v in environ_proxies(url).items():
            proxies.setdefault(k, v)
        if verify is True or verify is None:
            verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or verify
        return {
            "proxies": merge_setting(proxies, self.proxies),
            "stream": merge_setting(stream, self.stream),
            "verify": merge_setting(verify, self.verify),
            "cert": merge_setting(cert, self.cert),
        }
