"""``manage.py issue_api_token <username> [--hours N]``: a new API token for a (service) user, printed once."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from integration_hub.api.tokens import issue_token


class Command(BaseCommand):
    help = "Issue an API token for a user. The token is printed once; only its digest is stored."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument(
            "--hours", type=float, default=None, help="validity in hours (default: HUB_API_TOKEN_TTL_HOURS)"
        )

    def handle(self, *args, username, hours, **options):
        try:
            user = get_user_model().objects.get(username=username, is_active=True)
        except get_user_model().DoesNotExist:
            raise CommandError(f"no active user {username!r}") from None
        if hours is not None and hours <= 0:
            raise CommandError("--hours must be positive")
        instance, token = issue_token(user, timedelta(hours=hours) if hours is not None else None)
        self.stderr.write(f"token for {username}, expires {instance.expiry:%Y-%m-%d %H:%M %Z}; shown only now:")
        self.stdout.write(token)
