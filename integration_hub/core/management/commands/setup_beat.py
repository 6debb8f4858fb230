from django.core.management.base import BaseCommand

from integration_hub.core import beat


class Command(BaseCommand):
    help = "Install the default periodic jobs into django-celery-beat (admins edit them afterwards)."

    def add_arguments(self, parser):
        parser.add_argument("--reset", action="store_true", help="overwrite admin edits with the shipped defaults")

    def handle(self, *args, reset=False, **opts):
        created, updated = beat.install(reset=reset)
        self.stdout.write(f"beat: {created} job(s) created, {updated} reset")
