"""Audit for people: names instead of ids, a global activity page (filters, pages, fixed queries) and revert of
an audited edit through the normal edit page (same validation, same impact preview), refused with a reason
when it cannot be reverted."""

from __future__ import annotations

import pytest
from django.test import Client
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from integration_hub.catalog.models import SkuMapping
from integration_hub.core import audit
from integration_hub.core.models import AuditEntry, Channel
from integration_hub.inventory.models import ChannelStockRule
from tests.support import factories as f


@pytest.fixture
def w(db):
    w = f.console_world()
    f.stock(w, w.items, 5)
    f.mappings(w, w.items)
    return w


def _edit_rule(user, buffer):
    with audit.acting_as(user, "console"):
        rule = ChannelStockRule.objects.get(channel__key="web")
        rule.safety_buffer = buffer
        rule.save()
    return AuditEntry.objects.filter(object_id=str(rule.pk), action="update").order_by("-id").first()


def test_entries_show_names_not_ids(w, role_client, make_user):
    editor = make_user("ops", "jane")
    editor.first_name, editor.last_name = "Jane", "Doe"
    editor.save()
    other = Channel.objects.create(key="app", name="App", connection=w.storefront, external_id="app")
    m = SkuMapping.objects.get(item=w.items[0])
    with audit.acting_as(editor, "console"):
        m.channel = other
        m.save()
    client = role_client("admin")
    html = client.get("/activity/").content.decode()
    row = html[html.index(f'data-entry="{AuditEntry.objects.filter(object_id=str(m.pk)).latest("id").pk}"') :]
    row = row[: row.index("</tr>")]
    assert (
        "Jane Doe" in row and "<strong>channel</strong>" in row and "<del>web</del>" in row and "<ins>app</ins>" in row
    )
    assert "channel_id" not in row
    # the rule pages' history too
    page = client.get(f"/rules/sku-mappings/{m.pk}/").content.decode()
    assert "<del>web</del>" in page and "Jane Doe" in page


def test_activity_filters_and_fixed_queries(w, role_client, make_user):
    admin_client = role_client("admin")
    jane = make_user("ops", "jane")
    _edit_rule(jane, 3)
    f.grow_rule_tables(w, 1, "a")  # one row of every kind (a name look-up per related model, not per row)
    small = f.count_queries(admin_client, "/activity/")
    f.grow_rule_tables(w, 20, "x")
    for i in range(10):
        _edit_rule(make_user("ops", f"u{i}"), 10 + i)
    assert f.count_queries(admin_client, "/activity/") == small
    html = admin_client.get(f"/activity/?user={jane.pk}").content.decode()
    assert html.count('data-entry="') == 1
    from django.contrib.contenttypes.models import ContentType

    ct = ContentType.objects.get_for_model(ChannelStockRule)
    html = admin_client.get(f"/activity/?type={ct.pk}").content.decode()
    assert html.count('data-entry="') >= 11 and "SKU mapping" not in html.split("<tbody>")[1]
    assert admin_client.get("/activity/?from=2999-01-01").content.decode().count('data-entry="') == 0
    assert "is not a date" in admin_client.get("/activity/?from=31/12/2025").content.decode()
    assert 'page=2' in admin_client.get("/activity/").content.decode()  # > 50 entries: paginated


def test_activity_roles(w, make_user):
    for role in ("finance", "cx"):
        c = Client()
        c.force_login(make_user(role))
        assert c.get("/activity/").status_code == 403


def test_revert_a_buffer_change_goes_through_the_impact_preview(w, role_client, make_user):
    entry = _edit_rule(make_user("ops", "jane"), 5)  # 0 → 5: every SKU on web drops to 0
    client = role_client("admin")
    page = client.get(f"/activity/{entry.pk}/revert/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Revert change #" in html and 'name="revert_of"' in html and 'value="0"' in html
    data = {k: v for k, v in page.context["form"].data.lists()}
    data["revert_of"] = [str(entry.pk)]
    r = client.post(f"/rules/channel-rules/{w.rule.pk}/", data)
    assert r.status_code == 200 and "3 SKUs on web go up" in r.content.decode()  # the preview, not saved yet
    assert ChannelStockRule.objects.get().safety_buffer == 5
    data["confirm"] = [r.context["confirm"]]
    assert client.post(f"/rules/channel-rules/{w.rule.pk}/", data).status_code == 302
    assert ChannelStockRule.objects.get().safety_buffer == 0
    new = AuditEntry.objects.filter(object_id=str(w.rule.pk), action="update").latest("id")
    assert new.pk != entry.pk and new.source == f"revert #{entry.pk}" and new.actor.username == "user-admin"
    assert new.before["safety_buffer"] == 5 and new.after["safety_buffer"] == 0
    # reverted once: the entry now has a newer change of the same field
    again = client.get(f"/activity/{entry.pk}/revert/")
    assert again.status_code == 409 and "Changed again since" in again.content.decode()


def test_revert_runs_the_same_validation(w, role_client, make_user):
    m = SkuMapping.objects.get(item=w.items[0])
    old_sku = m.storefront_sku
    with audit.acting_as(make_user("ops", "jane"), "console"):
        m.storefront_sku = "NEW-1"
        m.save()
    entry = AuditEntry.objects.filter(object_id=str(m.pk), action="update").latest("id")
    # someone else took the old storefront SKU on web meanwhile
    SkuMapping.objects.filter(item=w.items[1], channel=w.channel).update(storefront_sku=old_sku)
    html = role_client("admin").get(f"/activity/{entry.pk}/revert/").content.decode()
    assert "already mapped on that channel" in html


@pytest.mark.parametrize("case", ["create", "delete", "other-type", "gone", "no-op"])
def test_revert_refused_with_a_reason(w, role_client, make_user, case):
    client = role_client("admin")
    if case == "create":
        entry = audit.write(w.rule, "create", None, audit.snapshot(w.rule))
        reason = "created the row"
    elif case == "delete":
        m = SkuMapping.objects.get(item=w.items[0])
        m.delete()
        entry = AuditEntry.objects.get(action="delete")
        reason = "not restored by revert"
    elif case == "other-type":
        with audit.acting_as(None, "console"):
            w.channel.name = "Web"
            w.channel.save()
        entry = AuditEntry.objects.filter(action="update").latest("id")
        reason = "Only edits of"
    elif case == "gone":
        entry = _edit_rule(None, 4)
        ChannelStockRule.objects.all().delete()
        reason = "deleted since"
    else:
        entry = _edit_rule(None, 4)
        ChannelStockRule.objects.update(safety_buffer=0)  # put back outside the audit
        reason = "already has the values"
    r = client.get(f"/activity/{entry.pk}/revert/")
    assert r.status_code == 409 and reason in r.content.decode()


def test_revert_a_schedule_change(db, role_client):
    task = PeriodicTask.objects.create(
        name="daily", task="core.heartbeat", crontab=CrontabSchedule.objects.create(minute="0", hour="2")
    )
    client = role_client("admin")
    assert client.post(f"/schedules/{task.pk}/", {"every": "5", "period": "minutes"}).status_code == 302  # and disabled
    task.refresh_from_db()
    assert task.interval_id and not task.enabled
    entry = AuditEntry.objects.filter(object_id=str(task.pk), action="update").latest("id")
    page = client.get(f"/activity/{entry.pk}/revert/")
    assert page.status_code == 200 and "Revert change" in page.content.decode()
    data = {k: v for k, v in page.context["form"].data.lists()}
    assert data["cron"] == ["0 2 * * *"] and data.get("enabled") == ["on"]
    data["revert_of"] = [str(entry.pk)]
    assert client.post(f"/schedules/{task.pk}/", data).status_code == 302
    task.refresh_from_db()
    assert task.enabled and task.crontab.hour == "2" and task.interval_id is None
    assert AuditEntry.objects.filter(object_id=str(task.pk)).latest("id").source == f"revert #{entry.pk}"


def test_revert_needs_admin_and_the_save_needs_csrf(w, role_client, make_user):
    entry = _edit_rule(None, 5)
    assert role_client("ops").get(f"/activity/{entry.pk}/revert/").status_code == 403
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(make_user("admin", "adm2"))
    assert (
        strict.post(f"/rules/channel-rules/{w.rule.pk}/", {"revert_of": entry.pk, "safety_buffer": 0}).status_code
        == 403
    )
    assert ChannelStockRule.objects.get().safety_buffer == 5


def test_interval_snapshot_reads_back(db):
    from integration_hub.console.activity import INTERVAL

    for every, period in ((60, "seconds"), (1, "minutes"), (2, "hours"), (1, "days")):
        text = str(IntervalSchedule(every=every, period=period))
        m = INTERVAL.match(text)
        assert (int(m.group(1) or 1), m.group(2) + "s") == (every, period), text


def test_revert_a_location_change_of_a_channel_rule(w, role_client):
    from integration_hub.core.models import Location

    extra = Location.objects.create(code="wh2", name="Warehouse 2", connection=w.master, external_id="WH2")
    client = role_client("admin")
    page = client.get(f"/rules/channel-rules/{w.rule.pk}/")
    data = {k: v for k, v in page.context["form"].initial.items() if v is not None}
    data = {"channel": w.channel.pk, "mode": "segregated", "locations": [extra.pk], "safety_buffer": 0}
    r = client.post(f"/rules/channel-rules/{w.rule.pk}/", data)
    if r.status_code == 200:  # moves stock (wh2 holds none): confirm the preview
        r = client.post(f"/rules/channel-rules/{w.rule.pk}/", {**data, "confirm": r.context["confirm"]})
    assert r.status_code == 302
    assert list(w.rule.locations.values_list("code", flat=True)) == ["wh2"]
    entry = AuditEntry.objects.filter(object_id=str(w.rule.pk), after__has_key="locations").latest("id")
    page = client.get(f"/activity/{entry.pk}/revert/")
    assert page.status_code == 200
    assert page.context["form"].data.getlist("locations") == [str(w.location.pk)]
