"""Error reports (the debug 500 page, error e-mails) that never show a password.

Django's ``SafeExceptionReporterFilter`` hides settings by *name* (``KEY``, ``PASS``, ``SECRET`` …),
which misses connection URLs carrying credentials: ``DATABASE_URL``, ``CELERY_BROKER_URL``,
``REDIS_URL``, a cache ``LOCATION``, and the same strings in the process environment, which runserver
copies into ``request.META``. Here:

- :class:`HubExceptionReporterFilter` also hides those names and masks the password of every
  ``scheme://user:password@host`` string anywhere in settings, META, cookies and frame variables; and it
  honours ``@sensitive_variables`` / ``@sensitive_post_parameters`` with debug on too (Django's filter
  only does with debug off, i.e. not on the very page that shows them).
- :class:`HubExceptionReporter` masks URL passwords in the exception message, the rendered frame
  variables (object reprs included) and the source lines shown.

Wired by ``DEFAULT_EXCEPTION_REPORTER_FILTER`` and ``DEFAULT_EXCEPTION_REPORTER`` in settings. See
https://docs.djangoproject.com/en/5.2/howto/error-reporting/#custom-error-reports
"""

from __future__ import annotations

import re

from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

SUBSTITUTE = SafeExceptionReporterFilter.cleansed_substitute
# scheme://[user]:password@  — the password ends at the first '@' (it is percent-encoded in a valid URL).
_URL_CREDENTIALS = re.compile(r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^:/@\s'\"]*:)(?P<password>[^@\s'\"]+)@", re.IGNORECASE)
_MAX_CONTAINER = 500  # bigger dicts/lists in frame variables are masked in their rendered form instead


def mask_url_credentials(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` replaced by stars."""
    # str(): lazy string proxies (e.g. a package's lazily translated setting) pass isinstance(str) too
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group('head')}{SUBSTITUTE}@", str(text))


class HubExceptionReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE"
        "|DATABASE_URL|BROKER_URL|REDIS_URL|AMQP_URL|RESULT_BACKEND|DSN",
        flags=re.IGNORECASE,
    )

    def is_active(self, request):
        return True  # the debug page is where sensitive variables would be shown: cleanse there too

    def cleanse_setting(self, key, value):
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str):
            return mask_url_credentials(cleansed)
        return cleansed

    def get_traceback_frame_variables(self, request, tb_frame):
        return [
            (name, self._mask_value(value)) for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]

    def _mask_value(self, value):
        if isinstance(value, str):
            return mask_url_credentials(value)
        if isinstance(value, (dict, list, tuple)) and len(value) <= _MAX_CONTAINER:
            try:
                return self.cleanse_setting("", value)
            except (TypeError, ValueError, RecursionError):  # an odd container never stops the report
                return value
        return value


class HubExceptionReporter(ExceptionReporter):
    def get_traceback_data(self):
        data = super().get_traceback_data()
        if "exception_value" in data:
            data["exception_value"] = mask_url_credentials(data["exception_value"])
        for frame in data.get("frames", []):
            if "vars" in frame:
                frame["vars"] = [(name, mask_url_credentials(rendered)) for name, rendered in frame["vars"]]
            if frame.get("exc_cause") is not None:
                frame["exc_cause"] = mask_url_credentials(str(frame["exc_cause"]))
            # source lines too: a URL with a password written into code or a default
            if frame.get("context_line"):
                frame["context_line"] = mask_url_credentials(frame["context_line"])
            for key in ("pre_context", "post_context"):
                if frame.get(key):
                    frame[key] = [mask_url_credentials(line) for line in frame[key]]
        return data
