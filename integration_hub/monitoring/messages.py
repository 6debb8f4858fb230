"""The words of an alert: the one line people read when a rule fires or recovers (the firing's message, the
notification's text). Used by :mod:`.rules` (writing the firing) and :mod:`.delivery` (the recovery notice)."""

from __future__ import annotations

from .figures import FIGURES
from .models import AlertRule


def message(rule: AlertRule, key: str, value: float, recovered: bool = False) -> str:
    """One line for people: what fired (``value`` = the figure), or what recovered (``value`` = its peak)."""
    info = FIGURES.get(rule.figure)
    label = info.label if info else rule.figure
    where = f" [{key}]" if key else ""
    if recovered:
        return f"Recovered: {rule.name} — {label}{where} is no longer {rule.get_op_display()} {rule.threshold:g} (peak {value:g})"
    return f"{rule.name} — {label}{where} = {value:g} ({rule.get_op_display()} {rule.threshold:g})"
