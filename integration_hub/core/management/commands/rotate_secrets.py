"""Re-encrypt every stored secret with the newest key in HUB_ENCRYPTION_KEY.

Rotation: put a new key first in ``HUB_ENCRYPTION_KEY`` (``new,old``), restart, run this command, then
drop the old key. Every model field named ``*_encrypted`` (the project's convention; the audit trail
never copies them) is rewritten in bulk, one transaction per model; the rows are audited (the snapshot
leaves the secrets out). A token no configured key decrypts stops the command before anything is written.
``--legacy`` also decrypts with the unsalted SHA-256-of-SECRET_KEY key older versions derived when
``HUB_ENCRYPTION_KEY`` was unset: run it once after setting a real key on such a database.
"""

from __future__ import annotations

import operator
from functools import reduce

from django.apps import apps
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Q

from integration_hub.core import audit, crypto

BATCH = 500


def encrypted_fields(model) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields if f.name.endswith("_encrypted")]


class Command(BaseCommand):
    help = "Re-encrypt every stored secret (all *_encrypted fields) with the newest HUB_ENCRYPTION_KEY."

    def add_arguments(self, parser):
        parser.add_argument(
            "--legacy",
            action="store_true",
            help="also decrypt tokens made with the old SHA-256-of-SECRET_KEY derivation",
        )
        parser.add_argument("--dry-run", action="store_true", help="decrypt and count, write nothing")

    def handle(self, *args, **opts):
        extra = (crypto.legacy_key(settings.SECRET_KEY),) if opts["legacy"] else ()
        total = 0
        for model in apps.get_models():
            fields = encrypted_fields(model)
            if not fields:
                continue
            total += self.rotate_model(model, fields, extra, opts["dry_run"])
        verb = "would re-encrypt" if opts["dry_run"] else "re-encrypted"
        self.stdout.write(self.style.SUCCESS(f"{verb} {total} row(s) with the newest key"))

    def rotate_model(self, model, fields, extra, dry_run) -> int:
        label = model._meta.label
        with transaction.atomic():
            has_secret = reduce(operator.or_, [~Q(**{f: ""}) for f in fields])
            rows = list(model._default_manager.select_for_update().filter(has_secret).only("pk", *fields))
            changed = []
            for row in rows:
                touched = False
                for field in fields:
                    token = getattr(row, field)
                    if not token:
                        continue
                    try:
                        setattr(row, field, crypto.rotate(token, extra))
                    except ValueError:
                        raise CommandError(
                            f"{label} {row.pk}.{field} cannot be decrypted with the configured keys "
                            "(add the old key after the new one in HUB_ENCRYPTION_KEY, or --legacy); nothing written"
                        )
                    touched = True
                if touched:
                    changed.append(row)
            if changed and not dry_run:
                model._default_manager.bulk_update(changed, fields, batch_size=BATCH)
                # bulk_update sends no signals: audit the rows explicitly (secrets are never in snapshots)
                fresh = list(model._default_manager.filter(pk__in=[r.pk for r in changed]))
                audit.record_many(
                    fresh, "update", source="rotate_secrets", befores={r.pk: audit.snapshot(r) for r in fresh}
                )
        self.stdout.write(f"{label}: {len(changed)} row(s)")
        return len(changed)
