"""Create the four role groups. Their permissions are attached by
integration_hub.core.roles.sync_role_permissions after every migrate (so permissions of models added
later reach the roles too)."""

from django.db import migrations

ROLES = ("ops", "cx", "finance", "admin")


def create_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLES:
        Group.objects.get_or_create(name=name)


def drop_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [("core", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(create_groups, drop_groups)]
