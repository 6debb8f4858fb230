"""Sandbox emulators of every external system, served over real HTTP by :mod:`.server`.

Run standalone: ``python -m connectors.sandbox --port 8765``. Tests start one in a thread.
"""
from __future__ import annotations

import importlib
import importlib.util

# prefix → "module:Class"; each system's emulator module registers itself here.
EMULATORS = {
    "commercetools": "connectors.sandbox.commercetools:CommercetoolsEmulator",
    "wair": "connectors.sandbox.wair:WairEmulator",
    "sfcc": "connectors.sandbox.sfcc:SFCCEmulator",
    "clarus": "connectors.sandbox.clarus:ClarusEmulator",
    "archean": "connectors.sandbox.archean:ArcheanEmulator",
    "inventory_planner": "connectors.sandbox.inventory_planner:InventoryPlannerEmulator",
}


def build_emulators(only: list[str] | None = None):
    out = []
    for prefix, target in EMULATORS.items():
        if only and prefix not in only:
            continue
        module_name, cls_name = target.split(":")
        if importlib.util.find_spec(module_name) is None:
            continue  # not built yet
        out.append(getattr(importlib.import_module(module_name), cls_name)())
    return out


def make_server(host: str = "127.0.0.1", port: int = 8765, only: list[str] | None = None):
    from .server import SandboxServer

    return SandboxServer(build_emulators(only), host, port)
