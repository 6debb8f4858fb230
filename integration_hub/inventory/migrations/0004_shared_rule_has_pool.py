"""A shared channel stock rule must name its pool (it would otherwise give every SKU ATS 0)."""

from django.db import migrations, models


def segregate_poolless_shared_rules(apps, schema_editor):
    # Existing shared rules without a pool drew on no location (ATS 0). Make them segregated rules with
    # the locations they already have (none, typically): the same ATS, and the constraint can be added.
    # The console / admin show them as segregated without locations, which their validation rejects on
    # the next edit, so someone fixes them deliberately.
    Rule = apps.get_model("inventory", "ChannelStockRule")
    Rule.objects.filter(mode="shared", pool__isnull=True).update(mode="segregated")


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0003_reservation_acknowledged"),
    ]

    operations = [
        migrations.RunPython(segregate_poolless_shared_rules, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="channelstockrule",
            constraint=models.CheckConstraint(
                condition=models.Q(("mode", "shared"), _negated=True) | models.Q(("pool__isnull", False)),
                name="shared_rule_has_pool",
            ),
        ),
    ]
