"""Finance screens: report list (run on demand: queued to a worker, the list shows it running then done),
paginated report view, streamed CSV and XLSX downloads, e-mail subscriptions."""

from __future__ import annotations

from datetime import date
from functools import cached_property

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import FileResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views import View
from django.views.generic import TemplateView

from integration_hub.core.roles import PermissionRequired

from . import services
from .models import Report, ReportKind, ReportRow

PAGE_SIZE = 100


class KnownCountPaginator(Paginator):
    """The report already knows its row count: no COUNT(*) over a million rows per page view."""

    def __init__(self, object_list, per_page, count: int, **kwargs):
        super().__init__(object_list, per_page, **kwargs)
        self._known = count

    @cached_property
    def count(self):
        return self._known


class ReportListView(PermissionRequired, TemplateView):
    permission_required = "reconciliation.view_report"
    template_name = "reconciliation/list.html"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        qs = Report.objects.select_related("requested_by").order_by("-started_at", "-id")
        kind = self.request.GET.get("kind", "")
        if kind in ReportKind.values:
            qs = qs.filter(kind=kind)
        page = Paginator(qs, 50).get_page(self.request.GET.get("page"))
        day = self.request.GET.get("day", "")
        try:
            if day:
                qs = qs.filter(run_date=date.fromisoformat(day))
                page = Paginator(qs, 50).get_page(self.request.GET.get("page"))
        except ValueError:
            day = ""
        ctx.update(
            page=page,
            kinds=ReportKind.choices,
            kind=kind,
            day=day,
            today=timezone.localdate().isoformat(),
            running=any(r.status == Report.Status.RUNNING for r in page.object_list),
            can_run=self.request.user.has_perm("reconciliation.run_report"),
            can_download=self.request.user.has_perm("reconciliation.download_report"),
        )
        return ctx


class RunReportView(PermissionRequired, View):
    permission_required = "reconciliation.run_report"
    http_method_names = ["post"]

    def post(self, request):
        kind = request.POST.get("kind", "")
        if kind not in ReportKind.values and kind != "all":
            messages.error(request, "Choose a report.")
            return redirect("reconciliation:list")
        raw_day = (request.POST.get("run_date") or "").strip()
        try:
            day = date.fromisoformat(raw_day) if raw_day else None
        except ValueError:
            messages.error(request, f"{raw_day[:20]!r} is not a date: use the date picker (YYYY-MM-DD).")
            return redirect("reconciliation:list")
        try:
            reports = (
                services.queue_all(user=request.user, run_date=day)
                if kind == "all"
                else [services.queue_report(kind, user=request.user, run_date=day)]
            )
        except services.ReportError as exc:
            messages.error(request, str(exc))
            return redirect("reconciliation:list")
        what = ", ".join(r.get_kind_display() for r in reports)
        messages.success(
            request,
            f"{what} queued for {reports[0].run_date.isoformat()}: shown here as running, then done "
            "(this page refreshes itself while a report runs).",
        )
        return redirect("reconciliation:list")


class ReportDetailView(PermissionRequired, TemplateView):
    permission_required = "reconciliation.view_report"
    template_name = "reconciliation/detail.html"

    def get_context_data(self, pk, **kwargs):
        ctx = super().get_context_data(**kwargs)
        report = get_object_or_404(Report.objects.select_related("requested_by"), pk=pk)
        rows = ReportRow.objects.filter(report_id=report.pk).order_by("id")
        q = self.request.GET.get("q", "").strip()
        if q:
            rows = rows.filter(Q(sku=q) | Q(storefront_sku=q) | Q(order_ref=q) | Q(external_id=q) | Q(channel_key=q))
            paginator = Paginator(rows, PAGE_SIZE)
        else:
            paginator = KnownCountPaginator(rows, PAGE_SIZE, report.row_count)
        page = paginator.get_page(self.request.GET.get("page"))
        ctx.update(
            report=report,
            page=page,
            q=q,
            query=f"q={q}" if q else "",
            is_drift=report.kind == ReportKind.STOCK_DRIFT,
            can_download=self.request.user.has_perm("reconciliation.download_report"),
        )
        return ctx


class ReportCsvView(PermissionRequired, View):
    permission_required = ("reconciliation.view_report", "reconciliation.download_report")

    def get(self, request, pk):
        report = get_object_or_404(Report, pk=pk, status=Report.Status.DONE)
        excel = request.GET.get("format") != "plain"  # default: ready for Excel (BOM, SKUs as text)
        response = StreamingHttpResponse(services.iter_csv(report, excel=excel), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{services.csv_filename(report)}"'
        response["Cache-Control"] = "no-store"
        return response


XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class ReportXlsxView(PermissionRequired, View):
    """The report as an Excel workbook (typed cells: SKUs as text, money 0.00 with its currency)."""

    permission_required = ("reconciliation.view_report", "reconciliation.download_report")

    def get(self, request, pk):
        from . import xlsx

        report = get_object_or_404(Report, pk=pk, status=Report.Status.DONE)
        response = FileResponse(
            xlsx.spooled(report), as_attachment=True, filename=xlsx.filename(report), content_type=XLSX_TYPE
        )
        response["Cache-Control"] = "no-store"
        return response


class SubscriptionListView(PermissionRequired, TemplateView):
    """Report e-mail subscriptions: every one with its last delivery (sent, or waiting to retry and why), and
    a form to add one. Fixed queries: the subscriptions with their users, and their newest deliveries."""

    permission_required = "reconciliation.view_reportsubscription"
    template_name = "reconciliation/subscriptions.html"

    def get_context_data(self, form=None, **kwargs):
        from integration_hub.monitoring.models import Delivery

        from .forms import SubscriptionForm
        from .models import ReportSubscription

        ctx = super().get_context_data(**kwargs)
        subs = list(ReportSubscription.objects.select_related("user").order_by("id")[:200])
        last = {}
        for d in (
            Delivery.objects.filter(event=Delivery.Event.REPORT, subscription_id__in=[s.pk for s in subs])
            .order_by("-created_at", "-id")
            .only(
                "subscription_id",
                "status",
                "attempts",
                "last_error",
                "sent_at",
                "digest_day",
                "next_attempt_at",
                "created_at",
            )[:1000]
        ):
            last.setdefault(d.subscription_id, d)
        user = self.request.user
        ctx.update(
            rows=[(s, last.get(s.pk)) for s in subs],
            form=form or SubscriptionForm(user=user),
            can_add=user.has_perm("reconciliation.add_reportsubscription"),
            can_change=user.has_perm("reconciliation.change_reportsubscription"),
            can_delete=user.has_perm("reconciliation.delete_reportsubscription"),
        )
        return ctx

    def post(self, request):
        from .forms import SubscriptionForm

        if not request.user.has_perm("reconciliation.add_reportsubscription"):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied("Your role does not allow this page.")
        form = SubscriptionForm(request.POST, user=request.user)
        if not form.is_valid():
            return self.render_to_response(self.get_context_data(form=form), status=400)
        sub = form.save()
        messages.success(request, f"Subscribed: {sub}. Sent after each daily report run.")
        return redirect("reconciliation:subscriptions")


class SubscriptionChangeView(PermissionRequired, View):
    """Pause / resume or delete a subscription (audited)."""

    http_method_names = ["post"]

    def has_permission(self):
        action = self.kwargs.get("action")
        perm = "delete" if action == "delete" else "change"
        return action in ("pause", "resume", "delete") and self.request.user.has_perm(
            f"reconciliation.{perm}_reportsubscription"
        )

    def post(self, request, pk, action):
        from .models import ReportSubscription

        sub = get_object_or_404(ReportSubscription, pk=pk)
        if action == "delete":
            label = str(sub)
            sub.delete()
            messages.success(request, f"Deleted the subscription {label}.")
        else:
            sub.enabled = action == "resume"
            sub.save(update_fields=["enabled"])
            messages.success(request, f"{'Resumed' if sub.enabled else 'Paused'}: {sub}.")
        return redirect("reconciliation:subscriptions")
