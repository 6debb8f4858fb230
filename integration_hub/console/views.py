"""Staff console: dashboard, rule editing pages with audit history, CSV import, beat schedules.
Thin views; figures in :mod:`.services`, import in :mod:`integration_hub.catalog.mapping_import`, fixes in exceptions_app.triage."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Q
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone
from django.views import View
from django.views.generic import TemplateView
from django_celery_beat.models import PeriodicTask

from exceptions_app import kinds, triage
from integration_hub.catalog import mapping_import
from integration_hub.catalog.models import SkuMapping
from integration_hub.core import audit
from integration_hub.core.models import AuditEntry
from integration_hub.core.roles import PermissionRequired
from integration_hub.inventory.models import ChannelStockRule
from integration_hub.inventory import outbox
from integration_hub.inventory.rules import after_rule_deleted, audit_rule_locations, rule_location_codes
from integration_hub.orders import actions

from . import activity, impact, retry_all, schedules, services
from .forms import (
    CsvImportForm,
    ScheduleForm,
)
from .rule_tables import RULES, RuleType
from .services import history_rows

PAGE_SIZE = 50
RECENT_CHANGES = 20  # audit entries (edits, imports, deletions) shown under each rules table


class DashboardView(PermissionRequired, TemplateView):
    permission_required = "console.view_dashboard"
    template_name = "console/dashboard.html"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx["d"] = services.dashboard(self.request.user)
        return ctx


def favicon(request):
    """``/favicon.ico`` (browsers ask for it on every page): the static icon."""
    from django.templatetags.static import static

    return redirect(static("console/favicon.ico"), permanent=True)


class HomeView(View):
    """``/``: the dashboard for roles that have it, the reports for finance, else the login page."""

    def get(self, request):
        user = request.user
        if not user.is_authenticated:
            return redirect(f"{reverse('login')}?next=/")
        if user.has_perm("console.view_dashboard"):
            return DashboardView.as_view()(request)
        if user.has_perm("reconciliation.view_report"):
            return redirect("reconciliation:list")
        raise PermissionDenied("Your account has no role in the hub yet: ask an administrator.")


# --- rule editing ---------------------------------------------------------------------------------------------
def _rule(slug) -> RuleType:
    if slug not in RULES:
        raise Http404("no such rule table")
    return RULES[slug]


def _require(request, perms):
    if not request.user.has_perms(perms):
        raise PermissionDenied("Your role does not allow this page.")


class RuleListView(PermissionRequired, TemplateView):
    template_name = "console/rule_list.html"

    def has_permission(self):
        return self.request.user.has_perm(_rule(self.kwargs["slug"]).perm("view"))

    def get_context_data(self, slug, **kwargs):
        ctx = super().get_context_data(**kwargs)
        rt = _rule(slug)
        qs = rt.model.objects.select_related(*rt.select_related).prefetch_related(*rt.prefetch)
        q = self.request.GET.get("q", "").strip()
        if q and rt.search:
            cond = Q()
            for f in rt.search:
                cond |= Q(**{f"{f}__icontains": q})
            qs = qs.filter(cond)
        page = Paginator(qs.order_by("pk"), PAGE_SIZE).get_page(self.request.GET.get("page"))
        user = self.request.user
        ctx.update(
            rt=rt,
            page=page,
            q=q,
            headers=[c[0] for c in rt.columns],
            rows=[(o, [fn(o) for _, fn in rt.columns]) for o in page.object_list],
            can_add=user.has_perm(rt.perm("add")),
            can_change=user.has_perm(rt.perm("change")),
            recent=activity.named_history(audit.recent_for_model(rt.model)[:RECENT_CHANGES]),
            can_import=slug == "sku-mappings"
            and user.has_perms(["console.import_mappings", "catalog.add_skumapping", "catalog.change_skumapping"]),
        )
        return ctx


class RuleEditView(PermissionRequired, TemplateView):
    template_name = "console/rule_edit.html"

    def has_permission(self):
        rt = _rule(self.kwargs["slug"])
        return self.request.user.has_perm(rt.perm("view" if self.kwargs.get("pk") else "add"))

    def get_object(self, rt, pk):
        if pk is None:
            return rt.model()
        return get_object_or_404(rt.model.objects.select_related(*rt.select_related), pk=pk)

    def get_context_data(self, slug, pk=None, form=None, **kwargs):
        ctx = super().get_context_data(**kwargs)
        rt = _rule(slug)
        obj = self.get_object(rt, pk)
        user = self.request.user
        can_save = user.has_perm(rt.perm("change" if pk else "add"))
        form = form or rt.form(instance=obj)
        if not can_save:
            for f in form.fields.values():
                f.disabled = True
        history = activity.named_history(audit.history_for(obj)[:100]) if pk else []
        ctx.update(
            rt=rt,
            obj=obj,
            form=form,
            history=history,
            can_save=can_save,
            revert_of=_revert_of(self.request),
            can_delete=bool(pk) and user.has_perm(rt.perm("delete")),
            delete_previewed=rt.model in PREVIEWED_DELETES,
        )
        return ctx

    def post(self, request, slug, pk=None):
        rt = _rule(slug)
        _require(request, [rt.perm("change" if pk else "add")])
        obj = self.get_object(rt, pk)
        before = audit.snapshot(obj) if pk else None
        before_locations = rule_location_codes(obj) if rt.model is ChannelStockRule else None
        form = rt.form(request.POST, instance=obj)
        if not form.is_valid():
            response = self.render_to_response(self.get_context_data(slug=slug, pk=pk, form=form))
            response.status_code = 400
            return response

        def apply():
            with revert_source(request):
                saved = form.save()
                if rt.model is ChannelStockRule:
                    audit_rule_locations(saved, before_locations)
            return saved, (rt.after_save(saved, before) if rt.after_save else "")

        scope = _impact_scope(rt, form, before)
        if scope is None:
            with transaction.atomic():
                obj, note = apply()
        else:  # a change that moves stock is saved only once the person confirmed its previewed impact
            (obj, note), preview, saved = impact.apply_with_preview(
                apply, **scope, confirmed=impact.is_confirmed(request.POST)
            )
            if not saved:
                if not pk:
                    form.instance.pk = None
                ctx = self.get_context_data(slug=slug, pk=pk, form=form)
                ctx.update(impact=preview, confirm=impact.confirm_token(request.POST))
                return self.render_to_response(ctx)
        messages.success(request, f"Saved {obj}." + (f" {note}." if note else ""))
        for warning in form.overrides() if hasattr(form, "overrides") else []:
            messages.warning(request, warning)
        return redirect("console:rule_edit", slug=slug, pk=obj.pk)


def _impact_scope(rt: RuleType, form, before: dict | None) -> dict | None:
    """Which ATS a rule change can move: a channel rule its channel(s); a mapping its item(s) on its
    channel(s) (every channel for an all-channel mapping). None for tables that move no stock."""
    data = form.cleaned_data
    if rt.model is ChannelStockRule:
        ids = {data["channel"].pk} | ({before["channel_id"]} if before and before.get("channel_id") else set())
        return {"channel_ids": sorted(ids), "item_ids": None}
    if rt.model is SkuMapping:
        channels = [data.get("channel"), *([before.get("channel_id") or None] if before else [])]
        ids = None if any(c is None for c in channels) else sorted({getattr(c, "pk", c) for c in channels})
        items = {form.instance.item_id} | ({before["item_id"]} if before and before.get("item_id") else set())
        return {"channel_ids": ids, "item_ids": items}
    return None


PREVIEWED_DELETES = (SkuMapping, ChannelStockRule)  # deletes that move stock: impact preview, then confirm


class RuleDeleteView(PermissionRequired, View):
    """Delete a rule. Mappings and channel rules first show what the delete moves ("3 SKUs on web drop to 0",
    computed by deleting inside a rolled-back transaction) and are deleted only when that preview is confirmed."""

    http_method_names = ["post"]

    def has_permission(self):
        return self.request.user.has_perm(_rule(self.kwargs["slug"]).perm("delete"))

    def post(self, request, slug, pk):
        from django.shortcuts import render

        rt = _rule(slug)
        obj = get_object_or_404(rt.model, pk=pk)
        label = str(obj)
        if rt.model in PREVIEWED_DELETES:
            token = impact.delete_token(slug, pk, audit.snapshot(obj))
            confirmed = impact.token_matches(request.POST.get("confirm", ""), token)
            preview, deleted = impact.preview_delete(obj, confirmed=confirmed, after=after_rule_deleted)
            if not deleted:
                return render(
                    request,
                    "console/rule_delete.html",
                    {"rt": rt, "obj": obj, "label": label, "pk": pk, "impact": preview, "confirm": token},
                )
        else:
            with transaction.atomic():
                obj.delete()
        messages.success(request, f"Deleted {label}.")
        return redirect("console:rule_list", slug=slug)


class MappingImportView(PermissionRequired, TemplateView):
    permission_required = ("console.import_mappings", "catalog.add_skumapping", "catalog.change_skumapping")
    template_name = "console/mapping_import.html"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx.setdefault("form", CsvImportForm())
        ctx["columns"] = [*mapping_import.REQUIRED, *mapping_import.OPTIONAL]
        return ctx

    def post(self, request):
        form = CsvImportForm(request.POST, request.FILES)
        if not form.is_valid():
            return self.render_to_response(self.get_context_data(form=form), status=400)
        result = mapping_import.import_sku_mappings(
            form.cleaned_data["file"],
            user=request.user,  # streamed, not read whole
            dry_run=form.cleaned_data["dry_run"],
        )
        if request.POST.get("format") == "csv":
            response = HttpResponse(mapping_import.error_report_csv(result), content_type="text/csv")
            response["Content-Disposition"] = 'attachment; filename="mapping-import-errors.csv"'
            return response
        status = 400 if result.fatal else 200
        return self.render_to_response(self.get_context_data(form=CsvImportForm(), result=result), status=status)


# --- beat schedules -----------------------------------------------------------------------------------
class ScheduleListView(PermissionRequired, TemplateView):
    """Every beat job with its schedule in words and its next run; bulk enable/disable for admins (2 queries)."""

    permission_required = "django_celery_beat.view_periodictask"
    template_name = "console/schedule_list.html"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        now = timezone.now()
        tasks = list(PeriodicTask.objects.select_related("interval", "crontab", "clocked").order_by("name")[:500])
        ctx["rows"] = [(t, schedules.describe(t), schedules.next_run(t, now)) for t in tasks]
        ctx["can_change"] = self.request.user.has_perm("django_celery_beat.change_periodictask")
        return ctx


class ScheduleBulkView(PermissionRequired, View):
    """Enable or disable the selected jobs (each change audited; beat reloads)."""

    permission_required = "django_celery_beat.change_periodictask"
    http_method_names = ["post"]

    def post(self, request):
        ids = [int(x) for x in request.POST.getlist("ids") if x.isdigit()][:500]
        action = request.POST.get("action")
        if action not in ("enable", "disable") or not ids:
            messages.error(request, "Select the schedules, then Enable or Disable.")
            return redirect("console:schedule_list")
        n = schedules.set_enabled(ids, action == "enable")
        messages.success(
            request, f"{n} schedule(s) {action}d" + ("." if n == len(ids) else f" ({len(ids) - n} already {action}d).")
        )
        return redirect("console:schedule_list")


class ScheduleEditView(PermissionRequired, TemplateView):
    permission_required = "django_celery_beat.view_periodictask"
    template_name = "console/schedule_edit.html"

    def get_context_data(self, pk, form=None, **kwargs):
        from .models import ScheduleRun

        ctx = super().get_context_data(**kwargs)
        task = get_object_or_404(PeriodicTask.objects.select_related("interval", "crontab", "clocked"), pk=pk)
        ctx.update(
            task=task,
            form=form or ScheduleForm(instance=task),
            described=schedules.describe(task),
            next_run=schedules.next_run(task),
            runs=list(ScheduleRun.objects.filter(periodic_task=task).select_related("launched_by")[:10]),
            can_change=self.request.user.has_perm("django_celery_beat.change_periodictask"),
            revert_of=_revert_of(self.request),
            history=history_rows(audit.history_for(task)[:100]),
        )
        return ctx

    def post(self, request, pk):
        _require(request, ["django_celery_beat.change_periodictask"])
        task = get_object_or_404(PeriodicTask.objects.select_related("interval", "crontab"), pk=pk)
        form = ScheduleForm(request.POST, instance=task)
        if not form.is_valid():
            return self.render_to_response(self.get_context_data(pk=pk, form=form), status=400)
        with transaction.atomic(), revert_source(request):
            task = form.save()  # audited by core.beat.track_schedule_changes
        messages.success(request, f"Saved schedule '{task.name}'.")
        return redirect("console:schedule_edit", pk=task.pk)


class ScheduleRunView(PermissionRequired, View):
    """Send a beat job's task to the workers now (same task, arguments and queue as the schedule); the run is
    recorded and audited, and the page that follows shows its result."""

    permission_required = "django_celery_beat.change_periodictask"
    http_method_names = ["post"]

    def post(self, request, pk):
        task = get_object_or_404(PeriodicTask, pk=pk)
        run = schedules.run_now(task, user=request.user)
        AuditEntry.objects.create(
            content_type=ContentType.objects.get_for_model(PeriodicTask),
            object_id=str(task.pk),
            object_repr=task.name[:300],
            action="update",
            actor=request.user,
            before=None,
            after={"run_now": run.celery_task_id, "run": run.pk},
            source="console",
        )
        if run.state == run.State.FAILED and not run.started_at:
            messages.error(request, f"'{task.name}' could not be sent: {run.error}")
        else:
            messages.success(request, f"Sent '{task.name}' to the workers (task id {run.celery_task_id}).")
        return redirect("console:schedule_run_detail", pk=run.pk)


class ScheduleRunDetailView(PermissionRequired, TemplateView):
    """One "Run now": queued → running → succeeded / failed, with the task's outcome or error."""

    permission_required = ("django_celery_beat.view_periodictask", "console.view_schedulerun")
    template_name = "console/schedule_run.html"

    def get_context_data(self, pk, **kwargs):
        from .models import ScheduleRun

        ctx = super().get_context_data(**kwargs)
        run = get_object_or_404(ScheduleRun.objects.select_related("launched_by", "periodic_task"), pk=pk)
        ctx.update(run=run, pending=run.state in (run.State.QUEUED, run.State.STARTED))
        return ctx


# --- audit: global activity and revert -------------------------------------------------------------------------
REVERT_PERMISSION = "core.change_auditentry"  # admins (ops have core.view_* only)


def _revert_of(request) -> int | None:
    raw = request.POST.get("revert_of") or request.GET.get("revert_of") or ""
    return int(raw) if raw.isdigit() and request.user.has_perm(REVERT_PERMISSION) else None


def revert_source(request):
    """Audit entries written by a save that reverts entry N say so (source ``revert #N``)."""
    import contextlib

    entry = _revert_of(request) if request.method == "POST" else None
    return audit.acting_as(request.user, f"revert #{entry}"[:32]) if entry else contextlib.nullcontext()


class ActivityView(PermissionRequired, TemplateView):
    """Every audit entry, newest first: filter by user, object type and date; 50 a page; names, not ids.
    Fixed queries: the page, its count, the user and type choices, and one name look-up per related model."""

    permission_required = "core.view_auditentry"
    template_name = "console/activity.html"

    def get_context_data(self, **kwargs):
        from datetime import date, datetime, time as dtime, timedelta

        from django.contrib.auth import get_user_model

        ctx = super().get_context_data(**kwargs)
        qs = AuditEntry.objects.select_related("actor", "content_type").order_by("-at", "-id")
        g = self.request.GET
        user, ctype, since, until = (g.get(k, "").strip() for k in ("user", "type", "from", "to"))
        if user == "system":
            qs = qs.filter(actor__isnull=True)
        elif user.isdigit():
            qs = qs.filter(actor_id=int(user))
        if ctype.isdigit():
            qs = qs.filter(content_type_id=int(ctype))
        errors = []
        for name, raw, op in (("from", since, "gte"), ("to", until, "lt")):
            if not raw:
                continue
            try:
                day = date.fromisoformat(raw)
            except ValueError:
                errors.append(f"{raw[:20]!r} is not a date (YYYY-MM-DD).")
                continue
            bound = datetime.combine(
                day + timedelta(days=1 if op == "lt" else 0), dtime.min, tzinfo=timezone.get_current_timezone()
            )
            qs = qs.filter(**{f"at__{op}": bound})
        page = Paginator(qs, PAGE_SIZE).get_page(g.get("page"))
        rows = activity.named_history(page.object_list)
        query = g.copy()
        query.pop("page", None)
        users = (
            get_user_model()
            .objects.filter(pk__in=AuditEntry.objects.filter(actor__isnull=False).values("actor_id"))
            .order_by("username")
            .values_list("pk", "username")
        )
        types = ContentType.objects.filter(pk__in=AuditEntry.objects.values("content_type_id")).order_by(
            "app_label", "model"
        )
        ctx.update(
            page=page,
            rows=[
                (r, activity.REVERTIBLE.get((r.entry.content_type.app_label, r.entry.content_type.model))) for r in rows
            ],
            users=list(users),
            types=list(types),
            user_filter=user,
            type_filter=ctype,
            since=since,
            until=until,
            errors=errors,
            query=query.urlencode(),
            can_revert=self.request.user.has_perm(REVERT_PERMISSION),
        )
        return ctx


class RevertView(PermissionRequired, TemplateView):
    """The edit page filled with the values from before an audited edit. Saving it is a normal edit (same
    validation, same impact preview and confirmation), audited as ``revert #N``; refused with the reason
    when the entry cannot be reverted."""

    permission_required = ("core.view_auditentry", REVERT_PERMISSION)

    def get(self, request, pk):
        from django.shortcuts import render

        entry = get_object_or_404(AuditEntry.objects.select_related("actor", "content_type"), pk=pk)
        try:
            plan = activity.revert_plan(entry)
        except activity.NotRevertible as exc:
            return render(request, "console/revert_refused.html", {"entry": entry, "reason": str(exc)}, status=409)
        intro = {"entry": entry, "changes": plan.changes}
        if plan.kind == "schedule":
            _require(request, ["django_celery_beat.change_periodictask"])
            view = ScheduleEditView(request=request, kwargs={"pk": plan.obj.pk})
            form = ScheduleForm(plan.data, instance=plan.obj)
            form.is_valid()
            ctx = view.get_context_data(pk=plan.obj.pk, form=form)
            ctx.update(
                revert=intro, revert_of=entry.pk, form_action=reverse("console:schedule_edit", args=[plan.obj.pk])
            )
            return render(request, "console/schedule_edit.html", ctx)
        rt = _rule(plan.kind)
        _require(request, [rt.perm("change")])
        view = RuleEditView(request=request, kwargs={"slug": plan.kind, "pk": plan.obj.pk})
        form = rt.form(plan.data, instance=rt.model.objects.get(pk=plan.obj.pk))
        form.is_valid()  # shows now whatever the previous values no longer pass (the save refuses them alike)
        ctx = view.get_context_data(slug=plan.kind, pk=plan.obj.pk, form=form)
        ctx.update(
            revert=intro, revert_of=entry.pk, form_action=reverse("console:rule_edit", args=[plan.kind, plan.obj.pk])
        )
        return render(request, "console/rule_edit.html", ctx)


# --- orders (look-up for ops / customer service) -------------------------------------------------------------
class OrderListView(PermissionRequired, TemplateView):
    permission_required = "orders.view_order"
    template_name = "console/order_list.html"

    def get_context_data(self, **kwargs):
        from integration_hub.core.models import Channel
        from integration_hub.orders.models import OrderState

        ctx = super().get_context_data(**kwargs)
        state, channel, q = (self.request.GET.get(k, "").strip() for k in ("state", "channel", "q"))
        qs = (
            retry_all.order_queryset(self.request.GET)
            .select_related("channel", "warehouse")
            .defer("raw", "billing_address", "shipping_address", "custom_fields")
        )
        page = Paginator(qs.order_by("-created_at", "-id"), PAGE_SIZE).get_page(self.request.GET.get("page"))
        query = self.request.GET.copy()
        query.pop("page", None)
        can_retry_all = self.request.user.has_perms(RETRY_ALL_ORDERS)
        ctx.update(
            page=page,
            states=OrderState.choices,
            state=state,
            channel=channel,
            q=q,
            query=query.urlencode(),
            channels=list(Channel.objects.values_list("key", "name")),
            can_retry_all=can_retry_all,
            retryable_count=retry_all.retryable(retry_all.order_queryset(self.request.GET)).count()
            if can_retry_all
            else 0,
        )
        return ctx


class OrderDetailView(PermissionRequired, TemplateView):
    permission_required = "orders.view_order"
    template_name = "console/order_detail.html"

    def get_context_data(self, pk, form=None, **kwargs):
        from exceptions_app.forms import OrderActionForm
        from integration_hub.orders.models import Order

        ctx = super().get_context_data(**kwargs)
        order = get_object_or_404(Order.objects.select_related("channel", "warehouse"), pk=pk)
        user = self.request.user
        exceptions = order_exceptions(order)
        ctx.update(
            order=order,
            lines=list(order.lines.select_related("item").order_by("id")),
            transitions=list(order.transitions.select_related("actor").order_by("-at", "-id")[:50]),
            order_form=form or OrderActionForm(record=_active_order_problem(exceptions), order=order, user=user),
            can_retry=user.has_perms(kinds.permissions("order", "retry")),
            can_cancel=user.has_perms(kinds.permissions("order", "cancel")),
            can_edit=user.has_perms(kinds.permissions("order", "edit")),
        )
        if user.has_perm("exceptions_app.view_exceptionrecord"):
            triage.attach_order_numbers(exceptions)
            ctx["exceptions"] = exceptions
        ctx["can_escalate"] = user.has_perm("exceptions_app.escalate_order")
        return ctx

    def post(self, request, pk):
        from exceptions_app.forms import OrderActionForm
        from integration_hub.orders.models import Order

        if not OrderActionForm.allowed(request.user, request.POST):  # before validation: no messages for them
            raise PermissionDenied("Your role does not allow this order action.")
        order = get_object_or_404(Order.objects.select_related("channel", "warehouse"), pk=pk)
        record = _active_order_problem(order_exceptions(order))
        form = OrderActionForm(request.POST, record=record, order=order, user=request.user)
        if not form.is_valid():
            return self.render_to_response(self.get_context_data(pk=pk, form=form), status=400)
        action = form.cleaned_data["action"]
        _require(request, kinds.permissions("order", action))  # the cleaned action (same as checked above)
        try:
            messages.success(
                request, triage.run_order_action(order, action, form.cleaned_data, user=request.user, record=record)
            )
        except triage.TriageError as exc:
            messages.error(request, str(exc))
        return redirect("console:order_detail", pk=order.pk)


class OrderEscalateView(PermissionRequired, View):
    """CX hand an order to ops with a note (an ``escalated`` record in the ops queue)."""

    permission_required = "exceptions_app.escalate_order"
    http_method_names = ["post"]

    def post(self, request, pk):
        from integration_hub.orders.models import Order

        order = get_object_or_404(Order.objects.select_related("channel"), pk=pk)
        try:
            triage.escalate_order(order, request.POST.get("note", "")[:2000], user=request.user)
        except triage.TriageError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Order {order} escalated to ops with your note.")
        return redirect("console:order_detail", pk=order.pk)


def order_exceptions(order) -> list:
    """Exceptions about this order: by reference, or by the order id the order flow puts in the context."""
    from exceptions_app.models import ExceptionRecord

    refs = {order.idempotency_key, order.order_number, order.external_id} - {""}
    return list(
        ExceptionRecord.objects.filter(Q(order_ref__in=refs) | Q(context__order_id=order.pk)).order_by("-last_seen")[
            :20
        ]
    )


def _active_order_problem(records):
    from exceptions_app.models import Kind

    for r in records:
        if r.is_active and r.kind in (Kind.STUCK_ORDER, Kind.BAD_PAYLOAD, Kind.MISSING_DISPATCH):
            return r
    return None


# --- stock push queue -------------------------------------------------------------------------------------
class PushQueueView(PermissionRequired, TemplateView):
    """The outbox of stock pushes: what waits, what keeps failing and why; "retry now" lifts the back-off —
    for the ticked rows or for every failing push the filters match (:mod:`.retry_all`)."""

    permission_required = "inventory.view_pendingpush"
    template_name = "console/push_list.html"

    def get_context_data(self, **kwargs):
        from integration_hub.core.models import Channel

        ctx = super().get_context_data(**kwargs)
        params = self.request.GET
        qs = retry_all.push_queryset(params).select_related("item", "channel")
        channel, failing, q = (params.get(k, "").strip() for k in ("channel", "failing", "q"))
        page = Paginator(qs.order_by("priority", "created_at", "id"), PAGE_SIZE).get_page(params.get("page"))
        query = params.copy()
        query.pop("page", None)
        can_retry_all = self.request.user.has_perms(RETRY_ALL_PUSHES)
        ctx.update(
            page=page,
            channel=channel,
            failing=failing,
            q=q,
            query=query.urlencode(),
            channels=list(Channel.objects.values_list("key", "name")),
            can_change=self.request.user.has_perm("inventory.change_pendingpush"),
            can_retry_all=can_retry_all,
            failing_count=retry_all.failing_pushes(params).count() if can_retry_all else 0,
        )
        return ctx


RETRY_ALL_PUSHES = ("inventory.change_pendingpush", "exceptions_app.bulk_retry")
RETRY_ALL_ORDERS = ("orders.retry_order", "exceptions_app.bulk_retry")


class _RetryAllView(PermissionRequired, View):
    """POST the list's filters → a confirmation showing how many rows match → POST again with that count → the
    whole set is retried (in the request up to HUB_BULK_INLINE_LIMIT rows, else on a worker)."""

    http_method_names = ["post"]
    what = ""
    list_url = ""
    noun = ""

    def matching(self, params):
        raise NotImplementedError

    def run(self, qs, user) -> str:
        raise NotImplementedError

    def post(self, request):
        from django.http import QueryDict
        from django.shortcuts import render

        query = request.POST.get("query", "")
        back = reverse(self.list_url) + ("?" + query if query else "")
        qs = self.matching(QueryDict(query))
        n = qs.count()
        if not n:
            messages.error(request, f"No {self.noun} match these filters.")
            return redirect(back)
        if request.POST.get("confirmed") != str(n):
            return render(
                request,
                "exceptions_app/confirm.html",
                {
                    "count": n,
                    "label": "retried",
                    "verb": "retry",
                    "noun": self.noun,
                    "back": back,
                    "fields": [("query", query)],
                    "search": query.replace("&", " "),
                    "note": "Every matching row on every page, not just the one shown.",
                },
            )
        if n > retry_all.inline_limit():
            from .tasks import retry_all as task

            task.delay(self.what, query=query, user_id=request.user.pk)
            messages.success(
                request, f"{n} {self.noun} queued to be retried on a worker; the dashboard shows its progress."
            )
        else:
            messages.success(request, self.run(qs, request.user))
        return redirect(back)


class PushRetryAllView(_RetryAllView):
    permission_required = RETRY_ALL_PUSHES
    what, list_url, noun = "pushes", "console:push_list", "failing push(es)"

    def matching(self, params):
        return retry_all.failing_pushes(params)

    def run(self, qs, user) -> str:
        n = outbox.lift_backoff(qs)
        return f"{n} failing push(es) will be retried now."


class OrderRetryAllView(_RetryAllView):
    permission_required = RETRY_ALL_ORDERS
    what, list_url, noun = "orders", "console:order_list", "retryable order(s)"

    def matching(self, params):
        return retry_all.retryable(retry_all.order_queryset(params))

    def run(self, qs, user) -> str:
        out = actions.retry_orders(list(qs.values_list("pk", flat=True)), actor=user)
        return (
            f"{out.due} order(s) due to be sent (or shown shipped) now; {out.held} still held after revalidation "
            "(their reasons are on each order)."
        )


class PushRetryView(PermissionRequired, View):
    permission_required = "inventory.change_pendingpush"
    http_method_names = ["post"]

    def post(self, request):
        from integration_hub.inventory.models import PendingPush

        ids = [int(x) for x in request.POST.getlist("ids") if x.isdigit()][:1000]
        if not ids:
            messages.error(request, "Select the pushes to retry.")
            return redirect("console:push_list")
        from integration_hub.monitoring import progress

        # dashboard bar: one UPDATE for the whole selection, so one step; the rows no longer queued drop out
        with progress.track(
            f"push-retry:{request.user.pk}", f"Retry {len(ids)} selected push(es)", total=len(ids)
        ) as bar:
            n = PendingPush.objects.filter(pk__in=ids).update(not_before=None)
            bar.advance(n, total=n)
            kicked = bool(outbox.kick())
        messages.success(
            request,
            f"{n} push(es) will be retried now"
            + ("." if kicked else " (workers will pick them up on the next sweep)."),
        )
        return redirect("console:push_list")
