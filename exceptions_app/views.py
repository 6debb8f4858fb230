"""Exception queue screens: list with filters, detail with context + audit, and the fix actions.
Thin: parsing and permissions here, the work in :mod:`exceptions_app.triage`."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.generic import TemplateView

from integration_hub.catalog import master_fix
from integration_hub.core import audit
from integration_hub.console.services import history_rows
from integration_hub.core.roles import PermissionRequired

from integration_hub.console.retry_all import inline_limit

from . import bulk, kinds, queue, search, triage
from .forms import MapSkuForm, OrderActionForm, StatusForm
from .models import ExceptionRecord

PAGE_SIZE = 50


class ExceptionListView(PermissionRequired, TemplateView):
    """The queue: one row per root cause (a parent with its records under it), sortable, searchable with
    :mod:`.search` syntax, with a 24 h trend per row and a bulk bar that acts on ticked rows or on everything
    the search matches. A fixed number of queries whatever the page holds (see :mod:`.queue`)."""

    permission_required = "exceptions_app.view_exceptionrecord"
    template_name = "exceptions_app/list.html"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        params, user = self.request.GET, self.request.user
        f = queue.filtered(params, user)
        sort = queue.clean_sort(params.get("sort"))
        flat = bool(f.parsed.values("group"))  # a group's own listing: its records one per row
        page = Paginator(queue.grouped(f.qs, sort, flat=flat), PAGE_SIZE).get_page(params.get("page"))
        rows = queue.rows_for(f.qs, list(page.object_list), flat=flat)
        query = params.copy()
        query.pop("page", None)
        unsorted = query.copy()
        unsorted.pop("sort", None)
        base = unsorted.urlencode()
        sorts = {}
        for key, (_, label) in queue.SORTS.items():
            current = sort.lstrip("-") == key
            desc = sort.startswith("-")
            nxt = (key if desc else f"-{key}") if current else (key if key == "kind" else f"-{key}")
            sorts[key] = {
                "label": label,
                "url": "?" + (f"{base}&" if base else "") + f"sort={nxt}",
                "aria": ("descending" if desc else "ascending") if current else "none",
            }
        can_change = user.has_perm("exceptions_app.change_exceptionrecord")
        matching, snoozed_hidden = f.counts()
        ctx.update(
            filter=f.filter,
            page=page,
            rows=rows,
            query=query.urlencode(),
            sorts=sorts,
            sort=sort,
            flat=flat,
            sort_label=f"{queue.SORTS[sort.lstrip('-')][1].lower()}, {'descending' if sort.startswith('-') else 'ascending'}",
            search_errors=f.errors,
            matching=matching,
            snoozed_hidden=snoozed_hidden,
            snooze_choices=bulk.SNOOZE_CHOICES,
            actions=bulk.ACTIONS,
            assignable=list(bulk.assignable().values_list("pk", "username")) if can_change else [],
            can_change=can_change,
            can_retry=user.has_perms(kinds.permissions("retry")),
            can_take_master=user.has_perms(kinds.permissions("take_master_value")),
            master_writable=master_fix.writable_systems(),
            here=self.request.get_full_path(),
        )
        return ctx


class ExceptionDetailView(PermissionRequired, TemplateView):
    permission_required = "exceptions_app.view_exceptionrecord"
    template_name = "exceptions_app/detail.html"

    def get_context_data(self, pk, **kwargs):
        ctx = super().get_context_data(**kwargs)
        record = get_object_or_404(
            ExceptionRecord.objects.select_related("channel", "connection", "status_changed_by", "assignee"), pk=pk
        )
        user = self.request.user
        action = triage.action_for(record)
        triage.attach_order_numbers([record])
        ctx.update(
            record=record,
            action=action,
            history=history_rows(audit.history_for(record)[:50]),
            plain=triage.plain_text(record),
            status_form=kwargs.get("status_form") or StatusForm(),
            can_change=user.has_perm("exceptions_app.change_exceptionrecord"),
        )
        if action == "map_sku":
            suggestion = triage.suggest(record)
            similar = triage.similar_open(record)
            ctx.update(
                suggestion=suggestion,
                similar_count=similar.count(),
                map_form=kwargs.get("map_form") or map_form(record, suggestion),
                can_map=user.has_perms(kinds.permissions("map_sku")),
            )
        if action == "take_master_value":
            ctx.update(
                can_take_master=user.has_perms(kinds.permissions("take_master_value")),
                not_writable=master_fix.writable_reason(record) if record.is_active else "",
            )
        if action == "repush_stock":
            ctx.update(
                can_repush=user.has_perms(kinds.permissions("repush_stock")),
                mapped_item_id=triage.mapped_item_id(record),
            )
        if triage.about_order(record):
            order = triage.order_for(record)
            ctx.update(
                order=order,
                order_form=kwargs.get("order_form") or OrderActionForm(record=record, order=order, user=user),
                transitions=list(order.transitions.select_related("actor").order_by("-at")[:20]) if order else [],
                can_retry=user.has_perms(kinds.permissions("order", "retry")),
                can_cancel=user.has_perms(kinds.permissions("order", "cancel")),
                can_edit=user.has_perms(kinds.permissions("order", "edit")),
            )
        return ctx


def map_form(record, suggestion, data=None) -> MapSkuForm:
    """The SKU fix form with this record's choices: near-match items and configured transforms that fit."""
    return MapSkuForm(
        data,
        suggestion=suggestion,
        alternatives=triage.near_matches(record, suggestion),
        transform_options=triage.transform_options(record),
        storefront_sku=record.sku,
    )


class _RecordAction(PermissionRequired, View):
    http_method_names = ["post"]

    def record(self, pk):
        return get_object_or_404(ExceptionRecord.objects.select_related("channel", "connection"), pk=pk)

    def back(self, record):
        return redirect(reverse("exceptions:detail", args=[record.pk]))

    def rerender(self, pk, **forms):
        view = ExceptionDetailView()
        view.setup(self.request, pk=pk)
        response = view.render_to_response(view.get_context_data(pk=pk, **forms))
        response.status_code = 400
        return response


class StatusActionView(_RecordAction):
    permission_required = "exceptions_app.change_exceptionrecord"

    def post(self, request, pk):
        record = self.record(pk)
        form = StatusForm(request.POST)
        if not form.is_valid():
            return self.rerender(pk, status_form=form)
        try:
            triage.change_status(
                record, form.cleaned_data["action"], user=request.user, reason=form.cleaned_data["reason"]
            )
        except triage.TriageError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request,
                f"Exception {form.cleaned_data['action']}d."
                if form.cleaned_data["action"] != "reopen"
                else "Exception reopened.",
            )
        return self.back(record)


class BulkStatusView(PermissionRequired, View):
    """The bulk bar: status, assignee, snooze or retry for the ticked rows (a ticked parent = every record under it
    that the queue's filters match) or for everything the search matches. Acting on more records than were ticked
    first shows the count and asks to confirm; more than ``HUB_BULK_INLINE_LIMIT`` records go to a worker."""

    permission_required = "exceptions_app.change_exceptionrecord"
    http_method_names = ["post"]

    def post(self, request):
        from django.http import QueryDict

        post = request.POST
        action = post.get("action") or ""
        query = post.get("query", "")
        back = reverse("exceptions:list") + ("?" + query if query else "")
        nxt = post.get("next") or ""
        if nxt.startswith("/exceptions/") and url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()}):
            back = nxt  # a record's own page
        if action == "retry" and not request.user.has_perms(kinds.permissions("retry")):
            raise PermissionDenied("Your role does not allow retrying orders and stock pushes.")
        ids, groups, all_matching = post.getlist("ids"), post.getlist("groups"), post.get("all") == "1"
        try:
            params = bulk.clean(action, post, request.user)
            targets = queue.target_ids(
                QueryDict(query), request.user, ids=ids, groups=groups, all_matching=all_matching
            )
        except (bulk.BulkError, search.SearchError) as exc:
            messages.error(request, str(exc))
            return redirect(back)
        if not targets:
            messages.error(request, "Select rows (or all matching) and an action.")
            return redirect(back)
        picked = len([i for i in ids if str(i).isdigit()]) + len(groups)
        if (all_matching or len(targets) > picked) and post.get("confirmed") != str(len(targets)):
            return render(
                request,
                "exceptions_app/confirm.html",
                {
                    "count": len(targets),
                    "action": action,
                    "label": bulk.ACTIONS[action],
                    "verb": bulk.VERBS[action],
                    "query": query,
                    "back": back,
                    "noun": "exception(s)",
                    "search": QueryDict(query).get("q", ""),
                    "fields": [
                        (k, v) for k in post for v in post.getlist(k) if k not in ("csrfmiddlewaretoken", "confirmed")
                    ],
                },
            )
        if len(targets) > inline_limit():
            from .tasks import bulk_action

            bulk_action.delay(
                action,
                query=query,
                ids=[int(i) for i in ids if str(i).isdigit()],
                groups=groups,
                all_matching=all_matching,
                params={
                    "reason": params.reason,
                    "assignee_id": params.assignee_id,
                    "snooze_until": params.snooze_until.isoformat() if params.snooze_until else None,
                },
                user_id=request.user.pk,
            )
            messages.success(
                request,
                f"{len(targets)} exception(s) queued to be {bulk.ACTIONS[action]} on a worker; "
                "the dashboard shows its progress.",
            )
            return redirect(back)
        out = bulk.run(targets, action, params, user=request.user)
        messages.success(request, out.summary(action))
        return redirect(back)


class MapSkuView(_RecordAction):
    permission_required = kinds.permissions("map_sku")

    def post(self, request, pk):
        record = self.record(pk)
        if triage.action_for(record) != "map_sku":
            messages.error(request, "This exception is not a SKU problem.")
            return self.back(record)
        suggestion = triage.suggest(record)
        form = map_form(record, suggestion, request.POST)
        if not form.is_valid():
            return self.rerender(pk, map_form=form)
        data = form.cleaned_data
        try:
            if data.get("bulk") and data.get("spec") is not None:
                result = triage.bulk_map_with_transform(record, data["spec"], user=request.user)
            else:
                result = triage.map_sku(
                    record,
                    data["item"],
                    all_channels=data.get("all_channels", False),
                    spec=data.get("spec"),
                    user=request.user,
                )
        except triage.TriageError as exc:
            messages.error(request, str(exc))
            return self.back(record)
        messages.success(
            request,
            "Mapping saved — " + result.summary() + ". The exception is acknowledged and "
            "resolves when the storefront confirms the re-queued stock push; held orders are re-checked.",
        )
        return self.back(record)


class RepushView(_RecordAction):
    permission_required = kinds.permissions("repush_stock")

    def post(self, request, pk):
        record = self.record(pk)
        try:
            triage.repush_stock(record, user=request.user)
        except triage.TriageError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request, "Stock push queued. The exception resolves when the storefront confirms the quantity."
            )
        return self.back(record)


class TakeMasterValueView(_RecordAction):
    """POST: write the item master's value to the system of a ``master_data_drift`` record (ops, admin)."""

    permission_required = kinds.permissions("take_master_value")  # ops, admin

    def post(self, request, pk):
        record = self.record(pk)
        try:
            result = master_fix.take_master_value(record, user=request.user)
        except master_fix.NotWritable as exc:
            messages.error(request, f"Cannot take the master's value: {exc}.")
        else:
            (messages.success if result.resolved else messages.error)(
                request, ("Resolved — " if result.resolved else "Still open — ") + result.message + "."
            )
        return redirect(safe_next(request) or reverse("exceptions:detail", args=[record.pk]))


def safe_next(request) -> str:
    nxt = request.POST.get("next") or ""
    return (
        nxt
        if nxt
        and url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()}, require_https=request.is_secure())
        else ""
    )


class OrderActionView(_RecordAction):
    permission_required = kinds.permissions("order")

    def post(self, request, pk):
        if not OrderActionForm.allowed(request.user, request.POST):  # before validation: no messages for them
            raise PermissionDenied("Your role does not allow this order action.")
        record = self.record(pk)
        order = triage.order_for(record)
        form = OrderActionForm(request.POST, record=record, order=order, user=request.user)
        if not form.is_valid():
            return self.rerender(pk, order_form=form)
        action = form.cleaned_data["action"]
        if not request.user.has_perms(kinds.permissions("order", action)):
            raise PermissionDenied("Your role does not allow this order action.")
        if order is None:
            messages.error(request, "The order this exception names is not in the hub.")
            return self.back(record)
        try:
            messages.success(
                request, triage.run_order_action(order, action, form.cleaned_data, user=request.user, record=record)
            )
        except triage.TriageError as exc:
            messages.error(request, str(exc))
        return self.back(record)
