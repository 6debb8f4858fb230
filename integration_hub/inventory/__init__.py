"""Stock engine: master stock in, available-to-sell out, queued, coalesced, throttled, never lost.

Map of the package (each module's docstring has the details):

  models.py    StockLevel, ChannelStockRule / StockPool, PendingPush (the outbox), ChannelStock, Reservation
  ats.py       ATS per (channel, item), one SQL statement for a whole channel or a set of pairs
  outbox.py    enqueue(item_ids, location_ids=, channel_ids=, priority=, reason=) — call it in the
               transaction that changes stock or reservations; enqueue_pairs; channels_for_locations;
               locations_for_channel
  services.py  apply_stock_changes(connection, changes) — inbound from masters (webhook, poll, snapshot);
               poll_master; resync_master
  push.py      claim / push_batch / drain — the outbox drained to Storefront.set_stock
  full_load.py push_channels — a channel's first sync / full resync as one Storefront.push_full per storefront
  drift.py     hub ATS vs storefront read-back → stock_drift records and repair pushes
  views.py     POST /hooks/stock/<connection name>/ (signed)
  tasks.py     push_pending, sweep_pending, poll_masters, poll_stock, resync_masters, drift_check, full_load
  beat.py      the periodic jobs (setup_beat installs them)
  sql.py       portable bulk upsert
  management/commands/stock.py   ``manage.py stock push|sweep|poll|resync|drift|requeue|fullload|status``
"""
