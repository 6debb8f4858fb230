"""Staff console: server-rendered pages for ops, customer service, finance and admins.

Pages (login required; each checks permissions, never group names — see core.roles.ROLE_PERMISSIONS):

  /                         dashboard (console.view_dashboard) — finance is sent to /reports/
  /dashboard/               sync health: pending pushes, connections' last success + poll cursors, worker
                            heartbeat, open exceptions by kind, orders by state, oldest stuck item
  /exceptions/              exception queue (exceptions_app.view_exceptionrecord): filters, bulk triage
  /exceptions/<id>/         detail, context, audit, and the fix: map SKU (+ bulk transform), order
                            retry / edit-and-resend / cancel, stock re-push; acknowledge / ignore / resolve
  /orders/, /orders/<id>/   order look-up with the same order actions (orders.view_order, retry/cancel perms)
  /pushes/                  stock push outbox, "retry now" (inventory.view/change_pendingpush)
  /rules/<table>/           sku-mappings, transforms, channel-rules, shipping-methods: list, edit with audit
                            history (model view/add/change/delete permissions)
  /rules/sku-mappings/import/  CSV import with per-row errors (console.import_mappings)
  /schedules/               beat jobs: enable, interval or crontab, audited (django_celery_beat perms)
  /reports/                 finance reconciliation (integration_hub.reconciliation)
  /api/                     REST API (integration_hub.api), schema at /api/schema/, docs at /api/docs/

Figures live in :mod:`.services`, the CSV import in :mod:`integration_hub.catalog.mapping_import`, fix actions in
:mod:`exceptions_app.triage`. Every page runs a fixed number of queries whatever the row count.
"""
