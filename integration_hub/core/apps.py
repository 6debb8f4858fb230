from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    name = "integration_hub.core"
    label = "core"
    verbose_name = "Systems & access"

    def ready(self):
        from . import audit, beat, filemodes, roles
        from .models import Channel, Connection, Location

        audit.track(Connection, Channel, Location)
        beat.track_schedule_changes()  # beat jobs: audited whatever edits them (console, API, admin, setup_beat)
        post_migrate.connect(roles.sync_role_permissions, dispatch_uid="hub-sync-role-permissions")
        connection_created.connect(filemodes.restrict_sqlite_files, dispatch_uid="hub-private-sqlite-files")
