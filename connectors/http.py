"""The one HTTP client layer every connector uses (ARCHITECTURE principle 3).

- pooled ``requests.Session`` per (process, API root), keep-alive;
- connect/read timeouts on every call;
- OAuth2 client-credentials token cache (Django cache, so Redis-shared when configured), refreshed
  once on a 401;
- a token bucket per connection shared by every worker (:mod:`connectors.ratelimit`); a 429 blocks the
  shared bucket for its Retry-After, so every worker of the connection waits, not only the one refused;
- exponential back-off with full jitter for retryable failures, honouring ``Retry-After``;
- every failure mapped onto :mod:`connectors.errors`; an error's message (what ops read) names the
  system, method, URL without its query, status and error class — never the remote's body, which stays on
  the error (``exc.body`` / ``exc.detail``) for connector logic and for admins;
- outbound destinations guarded (:mod:`connectors.egress`): connections go only to verified public
  addresses unless ``HUB_OUTBOUND_ALLOW`` lists them;
- redirects are not followed automatically (``requests.Session.rebuild_auth`` strips only
  ``Authorization`` on a cross-host redirect and would re-send ``X-Api-Key``, account and other custom
  headers to the new host; method rewriting below follows ``Session.rebuild_method``): a redirect
  within the same origin (scheme, host, port) is followed up to ``MAX_REDIRECTS`` times, one to another
  origin is a :class:`connectors.errors.RedirectRefusedError`. Token requests follow no redirect at all.

Retrying a POST is only safe when the target deduplicates it: callers send an idempotency key.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable
from urllib.parse import urljoin, urlsplit

import requests
from requests.utils import select_proxy

from . import egress, errors, ratelimit
from .proxies import EnvCachedSession, environ_proxies
from .egress import display_url

log = logging.getLogger(__name__)

_sessions: dict[str, requests.Session] = {}
_sessions_lock = threading.Lock()
MAX_REDIRECTS = 5


def pooled_session(key: str, pool_size: int = 32) -> requests.Session:
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = EnvCachedSession()
            adapter = egress.GuardedAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            _sessions[key] = session
        return session


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# --- authentication ----------------------------------------------------------------------------
class Auth:
    def apply(self, client: "HttpClient", headers: dict) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def invalidate(self) -> None:
        pass


@dataclass
class NoAuth(Auth):
    def apply(self, client, headers):
        return None


@dataclass
class HeaderAuth(Auth):
    """A static API key or bearer token sent in a header."""

    header: str
    value: str

    def apply(self, client, headers):
        headers[self.header] = self.value


class CachedTokenAuth(Auth):
    """A bearer token fetched from a token endpoint and cached (Django cache, so Redis-shared when
    configured; process memory outside Django) until shortly before it expires. Subclasses implement
    :meth:`fetch` (one POST to their endpoint) and :attr:`cache_key`; a 401 on an API call makes the
    client call :meth:`invalidate` and fetch once more. Failures map onto the error taxonomy."""

    system = "oauth"
    timeout: float = 10.0

    @property
    def cache_key(self) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def fetch(self, session: requests.Session) -> requests.Response:  # pragma: no cover - interface
        raise NotImplementedError

    def parse(self, body: dict) -> tuple[str, int]:
        """(token, seconds to live) from the endpoint's JSON."""
        return body["access_token"], int(body.get("expires_in") or 3600)

    def _local_store(self) -> dict:
        if not hasattr(self, "_local_tokens"):
            self._local_tokens: dict = {}
        return self._local_tokens

    @staticmethod
    def _cache():
        try:
            from django.conf import settings
            from django.core.cache import cache

            return cache if settings.configured else None
        except Exception:  # usable outside Django (bench scripts)
            return None

    def _shared(self, op: str, *args):
        """A call on the shared cache; None (logged) when its server cannot be reached — the token then
        lives in this process only until the cache answers again (one extra token request per process)."""
        cache = self._cache()
        if cache is None:
            return None
        try:
            return getattr(cache, op)(*args)
        except Exception as exc:  # noqa: BLE001 — any cache backend error (RedisError, OSError): never fail the call
            log.warning("%s token cache unreachable (%s); keeping the token in this process", self.system, exc)
            self._cache_down = True
            return None

    def token(self, session: requests.Session) -> str:
        cache, local = self._cache(), self._local_store()
        cached = self._shared("get", self.cache_key) if cache is not None else None
        if not cached and (cache is None or getattr(self, "_cache_down", False)):
            cached = local.get("token") if local.get("expires", 0) > time.time() else None
        if cached:
            return cached
        try:
            resp = self.fetch(session)
        except requests.Timeout as exc:
            raise errors.TimeoutError_(
                f"{self.system} token request timed out: {_reason(exc)}", system=self.system
            ) from exc
        except requests.RequestException as exc:
            raise errors.RetryableError(
                f"{self.system} token request failed: {_reason(exc)}", system=self.system
            ) from exc
        if resp.is_redirect:  # fetch() sends allow_redirects=False: credentials never follow a redirect
            raise errors.RedirectRefusedError(
                f"{self.system} token endpoint {display_url(resp.url)} redirected ({resp.status_code}) to "
                f"{display_url(urljoin(resp.url, resp.headers.get('Location', '')))}; credential requests follow no "
                f"redirect: set the token URL to the final address",
                status=resp.status_code,
                system=self.system,
            )
        if resp.status_code == 429 or resp.status_code >= 500:
            cls = errors.RateLimitedError if resp.status_code == 429 else errors.RetryableError
            raise cls(
                f"{self.system} token endpoint answered {resp.status_code}",
                status=resp.status_code,
                system=self.system,
                retry_after=parse_retry_after(resp.headers.get("Retry-After")),
            )
        if resp.status_code != 200:
            raise errors.PermanentError(
                f"{self.system} token endpoint {display_url(resp.url)} refused the credentials ({resp.status_code})",
                status=resp.status_code,
                body=resp.text[: errors.DETAIL_LIMIT],
                system=self.system,
            )
        token, ttl = self.parse(resp.json())
        ttl = max(1, ttl - min(60, ttl // 10))  # renew a little early
        self._cache_down = False
        if cache is not None:
            self._shared("set", self.cache_key, token, ttl)
        if cache is None or self._cache_down:
            local.update(token=token, expires=time.time() + ttl)
        return token

    def apply(self, client, headers):
        headers["Authorization"] = f"Bearer {self.token(client.session)}"

    def invalidate(self):
        self._shared("delete", self.cache_key)
        self._local_store().clear()


@dataclass
class OAuthClientCredentials(CachedTokenAuth):
    """OAuth 2.0 client-credentials grant with HTTP Basic client authentication (commercetools,
    Salesforce Account Manager)."""

    token_url: str
    client_id: str
    client_secret: str
    scope: str = ""
    extra: dict = field(default_factory=dict)
    timeout: float = 10.0

    @property
    def cache_key(self) -> str:
        # hashed: URLs and space-separated scopes are not portable cache-key characters (memcached)
        digest = hashlib.sha256(f"{self.token_url}\n{self.client_id}\n{self.scope}".encode()).hexdigest()[:32]
        return f"hub:oauth:{digest}"

    def fetch(self, session: requests.Session) -> requests.Response:
        data = {"grant_type": "client_credentials", **self.extra}
        if self.scope:
            data["scope"] = self.scope
        return session.post(
            self.token_url,
            data=data,
            auth=(self.client_id, self.client_secret),
            timeout=self.timeout,
            allow_redirects=False,
        )


# --- the client ----------------------------------------------------------------------------------
@dataclass
class ClientStats:
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    conflicts: int = 0
    timeouts: int = 0
    server_errors: int = 0
    waited_seconds: float = 0.0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class HttpClient:
    """JSON-over-HTTP client for one connection."""

    def __init__(
        self,
        system: str,
        base_url: str,
        *,
        auth: Auth | None = None,
        rate_per_second: float = 10.0,
        burst: int = 10,
        timeout: float = 10.0,
        connect_timeout: float = 3.05,
        max_retries: int = 5,
        backoff_base: float = 0.2,
        backoff_cap: float = 30.0,
        bucket_name: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        default_headers: dict | None = None,
    ):
        self.system = system
        self.base_url = base_url.rstrip("/")
        self.auth = auth or NoAuth()
        self.timeout = (connect_timeout, timeout)
        self.max_retries = max_retries
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.sleep = sleep
        self.session = pooled_session(self.base_url)
        self.bucket = ratelimit.bucket_for(bucket_name or f"{system}:{self.base_url}", rate_per_second, burst)
        self.default_headers = {
            "Accept": "application/json",
            "User-Agent": "integration-hub/1.0",
            **(default_headers or {}),
        }
        self.stats = ClientStats()

    @classmethod
    def for_connection(cls, connection, auth: Auth | None = None, **kw) -> "HttpClient":
        return cls(
            connection.system_type,
            connection.base_url,
            auth=auth,
            rate_per_second=connection.rate_limit_per_second,
            burst=connection.rate_limit_burst,
            timeout=connection.timeout_seconds,
            max_retries=connection.max_retries,
            bucket_name=f"conn:{connection.pk}",
            **kw,
        )

    def url(self, path: str) -> str:
        if path.startswith("http://") or path.startswith("https://"):
            return path
        return f"{self.base_url}/{path.lstrip('/')}"

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        delay = random.uniform(0, min(self.backoff_cap, self.backoff_base * (2**attempt)))
        if retry_after is not None:
            delay = max(delay, retry_after + random.uniform(0, self.backoff_base))
        return delay

    def _error_for(self, resp: requests.Response) -> errors.ConnectorError:
        """The taxonomy error for a refused response. Its message is the classified summary ops read; the
        body (parsed JSON or a text excerpt) rides on the error for connectors and admins only."""
        status = resp.status_code
        try:
            body: Any = resp.json()
        except ValueError:
            body = resp.text[: errors.DETAIL_LIMIT]
        kw: dict = dict(status=status, body=body, system=self.system)
        if status == 429:
            self.stats.rate_limited += 1
            cls, kw["retry_after"] = errors.RateLimitedError, parse_retry_after(resp.headers.get("Retry-After"))
        elif status == 409:
            self.stats.conflicts += 1
            cls, kw["current_version"] = errors.ConflictError, _current_version(body)
        elif status == 404:
            cls = errors.NotFoundError
        elif status in (400, 422):
            cls = errors.BadDataError
        elif status in (408,) or status >= 500:
            self.stats.server_errors += 1
            cls, kw["retry_after"] = errors.RetryableError, parse_retry_after(resp.headers.get("Retry-After"))
        else:
            cls = errors.PermanentError
        msg = f"{self.system} {resp.request.method} {display_url(resp.url)} → {status} ({cls.kind})"
        return cls(msg, **kw)

    def _proxied(self, url: str) -> bool:
        proxies = dict(self.session.proxies or {})
        if self.session.trust_env:
            proxies = {**environ_proxies(url), **proxies}
        return bool(select_proxy(url, proxies))

    def _send(self, method: str, url: str, *, params, json, data, headers: dict, ok: set[int]) -> requests.Response:
        """One exchange: the guarded request, then same-origin redirects (at most MAX_REDIRECTS)."""
        for _hop in range(MAX_REDIRECTS + 1):
            # direct connections are verified where the socket opens (egress.GuardedAdapter); through a
            # proxy only the target's name can be checked, here, before the proxy is asked
            egress.check_url(url, resolve_host=self._proxied(url))
            resp = self.session.request(
                method,
                url,
                params=params,
                json=json,
                data=data,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
            )
            if resp.status_code in ok or not resp.is_redirect:
                return resp
            target = urljoin(resp.url, resp.headers["Location"])
            if _origin(target) != _origin(resp.url):
                resp.close()
                raise errors.RedirectRefusedError(
                    f"{self.system} {method} {display_url(resp.url)} → {resp.status_code} redirect to another origin "
                    f"{display_url(target)}, not followed (credentials stay with the configured host): "
                    f"set the connection's URL to the final address",
                    status=resp.status_code,
                    system=self.system,
                )
            resp.close()
            if (resp.status_code == 303 and method != "HEAD") or (resp.status_code in (301, 302) and method == "POST"):
                method, json, data = "GET", None, None  # what requests / browsers do (RFC 9110 §15.4)
                headers = {k: v for k, v in headers.items() if k.lower() not in ("content-type", "content-length")}
            url, params = target, None  # the Location carries its own query
        raise errors.PermanentError(
            f"{self.system} {method} {display_url(url)}: more than {MAX_REDIRECTS} redirects", system=self.system
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict | None = None,
        json: Any = None,
        data: Any = None,
        headers: dict | None = None,
        ok: Iterable[int] = (200, 201, 202, 204),
        retries: int | None = None,
        retry_conflicts: bool = False,
    ) -> requests.Response:
        """Send one request, retrying what is retryable. Returns the response for an ``ok`` status,
        raises a :class:`connectors.errors.ConnectorError` otherwise."""
        ok = set(ok)
        max_retries = self.max_retries if retries is None else retries
        attempt, refreshed_auth = 0, False
        url = self.url(path)
        while True:
            hdrs = dict(self.default_headers)
            if headers:
                hdrs.update(headers)
            try:
                # the token (a cache look-up, or a fetch) before the turn: nothing but the request itself may run
                # between taking a turn and using it, or the request arrives late, bunched with the ones after it
                self.auth.apply(self, hdrs)
                self.stats.waited_seconds += ratelimit.acquire(self.bucket, self.sleep)
                self.stats.requests += 1
                resp = self._send(method, url, params=params, json=json, data=data, headers=hdrs, ok=ok)
                if resp.status_code in ok:
                    return resp
                if resp.status_code == 401 and not refreshed_auth and not isinstance(self.auth, NoAuth):
                    self.auth.invalidate()
                    refreshed_auth = True
                    continue
                err = self._error_for(resp)
            except requests.Timeout as exc:
                self.stats.timeouts += 1
                err = errors.TimeoutError_(
                    f"{self.system} {method} {display_url(url)} timed out: {_reason(exc)}", system=self.system
                )
            except requests.ConnectionError as exc:
                err = errors.RetryableError(
                    f"{self.system} {method} {display_url(url)} connection failed: {_reason(exc)}", system=self.system
                )
            except errors.ConnectorError as exc:  # raised by auth (token endpoint)
                err = exc
            retry = err.retryable and (retry_conflicts or not isinstance(err, errors.ConflictError))
            delay = self.backoff(attempt, err.retry_after)
            if isinstance(err, errors.RateLimitedError):
                # the server refuses this connection for a while: every worker sharing the bucket waits it
                # out, not just this one (whether or not this call retries) — for at most backoff_cap: a
                # quota-style Retry-After of an hour must not park every worker inside a request
                self._block(min(err.retry_after if err.retry_after is not None else delay, self.backoff_cap))
            if not retry or attempt >= max_retries or delay > self.backoff_cap:
                # a wait longer than backoff_cap is not slept here: the error (with its retry_after) goes to
                # the caller, whose outbox row / next attempt time backs off without holding a worker
                raise err
            log.info("%s: %s, retry %d/%d in %.2fs", self.system, err, attempt + 1, max_retries, delay)
            self.stats.retries += 1
            self.stats.waited_seconds += delay
            self.sleep(delay)
            attempt += 1

    def _block(self, seconds: float) -> None:
        try:
            self.bucket.block(seconds)
        except Exception as exc:  # the shared store is down: this worker still backs off on its own
            log.warning("%s: could not record the rate-limit block on the shared limiter: %s", self.system, exc)

    def get(self, path: str, **kw) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw) -> requests.Response:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw) -> requests.Response:
        return self.request("DELETE", path, **kw)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(scheme)


_QUERY_RX = re.compile(r"\?[^\s'\")]*")


def _reason(exc: BaseException) -> str:
    """A transport failure's reason without the query strings urllib3 quotes (they can carry keys)."""
    return _QUERY_RX.sub("?…", str(exc))[:300]


def _current_version(body) -> int | None:
    """commercetools puts the current version in ``errors[].currentVersion`` of a 409 body."""
    if isinstance(body, dict):
        if isinstance(body.get("currentVersion"), int):
            return body["currentVersion"]
        for item in body.get("errors") or []:
            if isinstance(item, dict) and isinstance(item.get("currentVersion"), int):
                return item["currentVersion"]
    return None
