"""``manage.py stock <action>`` — run the stock engine's jobs synchronously (ops, demos, debugging).

push      drain the outbox now (``--order-only`` for live-order rows)
sweep     free dead workers' claims and dispatch drains to the broker
poll      fetch stock changes from every master (or ``--connection NAME``)
resync    apply every master's full snapshot (or ``--connection NAME``)
drift     compare hub ATS with the storefronts (or ``--channel KEY``)
requeue   queue a push of every mapped item on ``--channel KEY`` (after a rule change, a restore …)
fullload  push every mapped item on ``--channel KEY`` now as one full load (a first sync / full resync: SFCC on
          OCI sends one Impex import file; storefronts without a bulk path get the rows queued for the drain)
status    what waits in the outbox
onhand    check the maintained on-hand figures (inventory/on_hand.py) against a fresh aggregate of the stock rows;
          ``--repair`` rebuilds them (exit status 1 when they disagreed and were not repaired)
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Count, Min, Q

ACTIONS = ("push", "sweep", "poll", "resync", "drift", "requeue", "fullload", "status", "onhand")


class Command(BaseCommand):
    help = "Run stock-engine jobs synchronously: " + ", ".join(ACTIONS)

    def add_arguments(self, parser):
        parser.add_argument("action", choices=ACTIONS)
        parser.add_argument("--connection", help="master connection name (poll, resync)")
        parser.add_argument("--channel", help="channel key (drift, requeue, fullload)")
        parser.add_argument("--order-only", action="store_true", help="push: only live-order rows")
        parser.add_argument("--batch-size", type=int, default=200)
        parser.add_argument("--repair", action="store_true", help="onhand: rebuild the figures that disagree")

    def handle(self, *args, action, connection=None, channel=None, order_only=False, batch_size=200, **opts):
        if action == "onhand":
            return self._on_hand(opts.get("repair", False))
        from integration_hub.core.models import Channel
        from integration_hub.inventory import outbox, push, tasks
        from integration_hub.inventory.models import PendingPush

        if action == "push":
            totals, _ = push.drain(max_priority=0 if order_only else None, batch_size=batch_size, time_budget=3600)
            self.stdout.write(
                f"pushed {totals.pushed}, skipped {totals.skipped} (already confirmed), failed {totals.failed}, "
                f"dropped {totals.dropped}, requeued {totals.requeued}; left {PendingPush.objects.count()}"
            )
        elif action == "sweep":
            self.stdout.write(str(tasks.sweep_pending()))
        elif action in ("poll", "resync"):
            conns = list(tasks._master_connections())
            if connection:
                conns = [c for c in conns if c.name == connection]
                if not conns:
                    raise CommandError(f"no enabled inventory master named {connection!r}")
            for conn in conns:
                out = tasks.poll_stock(conn.pk) if action == "poll" else tasks.resync_masters(conn.pk)
                self.stdout.write(f"{conn.name}: {out}")
        elif action == "drift":
            ids = None
            if channel:
                ids = list(Channel.objects.filter(key=channel).values_list("pk", flat=True))
                if not ids:
                    raise CommandError(f"no channel {channel!r}")
            for res in tasks.drift_check(ids):
                self.stdout.write(str(res))
        elif action == "requeue":
            from integration_hub.catalog.models import SkuMapping

            if not channel:
                raise CommandError("requeue needs --channel")
            ch = Channel.objects.filter(key=channel).first()
            if ch is None:
                raise CommandError(f"no channel {channel!r}")
            items = SkuMapping.objects.filter(Q(channel=ch) | Q(channel__isnull=True), active=True).values_list(
                "item_id", flat=True
            )
            with transaction.atomic():
                n = outbox.enqueue(
                    list(items), channel_ids=[ch.pk], priority=PendingPush.Priority.SWEEP, reason="manual requeue"
                )
            self.stdout.write(f"{n} push(es) queued for {ch.key}")
        elif action == "fullload":
            from integration_hub.inventory import full_load

            ch = Channel.objects.select_related("connection").filter(key=channel or "").first()
            if ch is None:
                raise CommandError("fullload needs --channel KEY of an existing channel")
            res = full_load.push_channels([ch], reason="manual full load")
            self.stdout.write(
                f"{ch.key}: full load pushed {res.pushed}, skipped {res.skipped} (already confirmed), "
                f"failed {res.failed}"
            )
        else:  # status
            labels = dict(PendingPush.Priority.choices)
            rows = PendingPush.objects.values("priority").annotate(
                n=Count("id"), oldest=Min("created_at"), failing=Count("id", filter=Q(attempts__gt=0))
            )
            for r in rows.order_by("priority"):
                self.stdout.write(
                    f"{labels.get(r['priority'], r['priority'])}: {r['n']} waiting "
                    f"({r['failing']} failing), oldest {r['oldest']:%Y-%m-%d %H:%M:%S}"
                )
            if not rows:
                self.stdout.write("outbox empty")

    def _on_hand(self, repair: bool) -> None:
        from integration_hub.inventory import on_hand

        wrong = on_hand.verify()
        if not wrong:
            self.stdout.write("on-hand figures agree with the stock rows")
            return
        for channel_id, item_id, stored, expected in wrong[:20]:
            stored = "no row" if stored is None else f"stored {stored}"
            expected = "the channel has no rule" if expected is None else f"stock rows say {expected}"
            self.stdout.write(f"channel {channel_id} item {item_id}: {stored}, {expected}")
        channels = sorted({w[0] for w in wrong})
        if not repair:
            raise CommandError(
                f"{len(wrong)} on-hand figures disagree (on {len(channels)} channels); --repair rebuilds them"
            )
        on_hand.rebuild(channels)
        self.stdout.write(f"rebuilt the on-hand figures of {len(channels)} channels ({len(wrong)} disagreed)")
