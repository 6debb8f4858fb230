"""Issue (or rotate) the feed token a planner uses to pull the hub's demand files, and print the URLs to
enter in Inventory Planner's CSV connector (one connector per warehouse)."""

from django.core.management.base import BaseCommand, CommandError

from integration_hub.core.models import Connection, PLANNER_SYSTEMS
from integration_hub.planning import feeds


class Command(BaseCommand):
    help = "Issue a new feed token for a planner connection (the old one stops working) and print the file URLs."

    def add_arguments(self, parser):
        parser.add_argument("connection", help="planner connection name")
        parser.add_argument("--base-url", default="https://hub.example.com", help="the hub's public URL root")
        parser.add_argument("--warehouse", action="append", default=[], help="planner warehouse id (repeatable)")

    def handle(self, connection, base_url, warehouse, **opts):
        conn = Connection.objects.filter(name=connection, system_type__in=list(PLANNER_SYSTEMS)).first()
        if conn is None:
            raise CommandError(f"no planner connection named {connection!r}")
        token = feeds.issue_token(conn)
        self.stdout.write(f"token (shown once; HTTP basic password, any user name): {token}")
        for wh in warehouse or sorted(set(feeds.planner_warehouse_map(conn).values())) or ["<warehouse id>"]:
            for name in ("products.csv", "sales-orders.csv"):
                self.stdout.write(f"{wh}: {base_url.rstrip('/')}/planning/feeds/{conn.name}/{wh}/{name}")
