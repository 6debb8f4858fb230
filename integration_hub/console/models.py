"""The console owns no data of its own; this unmanaged model only carries the console's custom
permissions so roles can be granted them like any other (``console.view_dashboard``)."""
from django.db import models


class ConsoleAccess(models.Model):
    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("view_dashboard", "Can view the sync health dashboard"),
            ("import_mappings", "Can import SKU mappings from CSV"),
        ]
