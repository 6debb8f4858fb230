from django.db import migrations


def reinstall(apps, schema_editor):
    # the on-hand table gains a row for every (ruled channel, item), zero without stock, kept by a trigger on the item
    # table too (inventory/on_hand.py); install() drops and recreates the triggers and refills the table
    from integration_hub.inventory import on_hand

    on_hand.install(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ('inventory', '0008_channel_on_hand'),
    ]

    operations = [migrations.RunPython(reinstall, reinstall)]
