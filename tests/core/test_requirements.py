"""requirements.txt alone must run what the README deploys: a Redis broker (kombu's redis transport) and
the Redis cache / rate limiter. Checked by reading the transport's own imports, so a new undeclared
dependency in a kombu upgrade fails here instead of in production (issue 20, item 8)."""

from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _pinned() -> set[str]:
    names = set()
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==", line)
        if m:
            names.add(re.sub(r"[-_.]+", "-", m.group(1)).lower())
    return names


def _third_party_imports(module: str) -> set[str]:
    source = Path(importlib.util.find_spec(module).origin).read_text()
    tops = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            tops |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return {t for t in tops if t not in sys.stdlib_module_names and t != "__future__"}


def _distributions(top_modules: set[str]) -> set[str]:
    mapping = md.packages_distributions()
    return {re.sub(r"[-_.]+", "-", d).lower() for t in top_modules for d in mapping.get(t, [t])}


def test_redis_transport_and_cache_dependencies_are_pinned():
    needed = _distributions(_third_party_imports("kombu.transport.redis") | {"redis"})
    assert "packaging" in needed  # the transport's undeclared import this test exists for
    # what kombu declares is installed with it; anything else must be pinned by us, not left to whichever
    # other package happens to pull it in today
    declared = {
        re.sub(r"[-_.]+", "-", re.split(r"[ ;<>=!~\[]", r, 1)[0]).lower()
        for r in (md.requires("kombu") or [])
        if "extra ==" not in r
    }
    missing = needed - declared - {"kombu"} - _pinned()
    assert not missing, f"requirements.txt lacks what kombu's redis transport imports: {sorted(missing)}"
