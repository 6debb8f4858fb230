import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ('core', '0001_initial'),
        ('orders', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='order',
            name='claim_token',
            field=models.CharField(
                blank=True,
                db_index=True,
                help_text='set while a worker works on the order; the lease is next_attempt_at',
                max_length=32,
            ),
        ),
        migrations.AddField(
            model_name='order',
            name='last_error',
            field=models.TextField(blank=True, help_text='last failure talking to the warehouse / storefront'),
        ),
        migrations.AddField(
            model_name='order',
            name='warehouse_carrier',
            field=models.CharField(blank=True, max_length=100),
        ),
        migrations.AddField(
            model_name='order',
            name='notify_attempts',
            field=models.PositiveIntegerField(default=0, help_text='attempts to mark the storefront order shipped'),
        ),
        migrations.CreateModel(
            name='StorefrontFulfilment',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('fulfilment_ref', models.CharField(max_length=100)),
                ('lines', models.JSONField(default=list, help_text='[[master sku, quantity], …]')),
                ('location', models.CharField(blank=True, help_text='master location id', max_length=100)),
                ('fulfilled_at', models.DateTimeField(blank=True, null=True)),
                ('ack_id', models.CharField(blank=True, help_text="the master's acknowledgement id", max_length=100)),
                ('acknowledged_at', models.DateTimeField(blank=True, null=True)),
                ('attempts', models.PositiveIntegerField(default=0)),
                ('next_attempt_at', models.DateTimeField(blank=True, null=True)),
                ('last_error', models.TextField(blank=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                (
                    'order',
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name='storefront_fulfilments',
                        to='orders.order',
                    ),
                ),
                (
                    'warehouse',
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name='storefront_fulfilments',
                        to='core.connection',
                    ),
                ),
            ],
            options={
                'ordering': ['id'],
                'indexes': [
                    models.Index(fields=['acknowledged_at', 'next_attempt_at'], name='orders_stor_acknowl_086727_idx')
                ],
                'constraints': [models.UniqueConstraint(fields=('order', 'fulfilment_ref'), name='uniq_sf_fulfilment')],
            },
        ),
    ]
