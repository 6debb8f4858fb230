from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the shipped alert rules that are missing (never changes existing ones)."

    def handle(self, *args, **options):
        from integration_hub.monitoring.defaults import install

        self.stdout.write(f"alert rules created: {install()}")
