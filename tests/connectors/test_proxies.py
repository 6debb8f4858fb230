"""connectors.proxies: the environment's proxies read once per change of the proxy variables, with the answer
requests itself gives."""

from __future__ import annotations

import pytest
import requests
from requests.utils import get_environ_proxies

from connectors import proxies

URLS = ("http://127.0.0.1:8765/wair/orders", "https://api.example.com/x", "http://internal.example.com:8080/y")
VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture
def clean_env(monkeypatch):
    for name in VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_same_answer_as_requests_and_a_changed_variable_is_seen(clean_env):
    for url in URLS:
        assert proxies.environ_proxies(url) == get_environ_proxies(url) == {}
    clean_env.setenv("HTTPS_PROXY", "http://proxy.example.com:3128")
    clean_env.setenv("http_proxy", "http://other.example.com:3128")
    for url in URLS:
        assert proxies.environ_proxies(url) == get_environ_proxies(url)
    assert proxies.environ_proxies(URLS[1])["https"] == "http://proxy.example.com:3128"
    clean_env.setenv("NO_PROXY", "internal.example.com,127.0.0.1")
    for url in URLS:
        assert proxies.environ_proxies(url) == get_environ_proxies(url)
    assert proxies.environ_proxies(URLS[2]) == {}
    clean_env.setenv("HTTPS_PROXY", "http://third.example.com:3128")  # same variable, new value
    assert proxies.environ_proxies(URLS[1])["https"] == "http://third.example.com:3128"


def test_callers_get_a_copy(clean_env):
    clean_env.setenv("HTTP_PROXY", "http://proxy.example.com:3128")
    first = proxies.environ_proxies(URLS[0])
    first["http"] = "changed"
    assert proxies.environ_proxies(URLS[0])["http"] == "http://proxy.example.com:3128"


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"HTTP_PROXY": "http://p:1", "NO_PROXY": "127.0.0.1"},
        {"https_proxy": "http://p:2", "REQUESTS_CA_BUNDLE": "/tmp/ca.pem"},
    ],
)
def test_session_merges_the_environment_like_requests(clean_env, env):
    clean_env.delenv("REQUESTS_CA_BUNDLE", raising=False)
    clean_env.delenv("CURL_CA_BUNDLE", raising=False)
    for k, v in env.items():
        clean_env.setenv(k, v)
    ours, theirs = proxies.EnvCachedSession(), requests.Session()
    for s in (ours, theirs):
        s.proxies = {"ftp": "http://ftp-proxy:21"}
    for url in URLS:
        for verify in (None, True, False):
            assert ours.merge_environment_settings(url, {}, None, verify, None) == theirs.merge_environment_settings(
                url, {}, None, verify, None
            )
