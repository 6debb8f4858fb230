"""REST API (DRF) over the same objects and services as the console.

Auth: ``Authorization: Token <key>`` (hashed, expiring knox tokens from ``POST /api/token/``, see
:mod:`integration_hub.api.tokens`) or session (browser, CSRF enforced). Missing/invalid credentials → 401.
Permissions: :class:`core.roles.HasModelRolePermission` — model permissions for every method including
GET; actions name their own permissions (``required_permissions``). Lists are filtered with
django-filter and paginated (``?page=``, 50 per page).
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial

from django.db import IntegrityError, transaction
from django.db.models import Prefetch
from django.http import Http404, StreamingHttpResponse
from django_celery_beat.models import PeriodicTask
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from exceptions_app import kinds, triage
from exceptions_app.filters import ExceptionFilter
from exceptions_app.models import ExceptionRecord, Kind
from integration_hub.catalog.models import IdentifierTransform, SkuMapping
from integration_hub.core import audit
from integration_hub.inventory.models import ChannelStockRule, PendingPush, StockLevel
from integration_hub.orders.models import Order, OrderLine, ShippingMethodMap
from integration_hub.reconciliation import services as recon
from integration_hub.reconciliation.models import Report, ReportRow
from integration_hub.reconciliation.views import KnownCountPaginator

from . import serializers as s


@contextmanager
def refused_as_400():
    """A write the database refuses (a unique row created by someone else between validation and save) is
    a 400 with a message, not an IntegrityError (500). The serializers check uniqueness first; this closes
    the race."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError as exc:
        raise ValidationError(
            {"detail": "This conflicts with a row saved meanwhile (same unique key): reload and try again."}
        ) from exc


class NumericLookup:
    """Detail URLs take a numeric id only, so ``/api/reports/null,null/csv/`` is a 404 at the router
    instead of a ValueError in a look-up (every viewset here has it, through :class:`ActsAsRequestUser`)."""

    lookup_value_regex = r"[0-9]+"


class ActsAsRequestUser(NumericLookup):
    """Audit entries written while an API request runs name the API user. DRF authenticates (token or
    session) inside the view, after :class:`core.audit.CurrentUserMiddleware` has run, so the middleware sees
    no user for token calls: take it here, once DRF knows who is calling."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        user = request.user if getattr(request.user, "is_authenticated", False) else None
        self._acting = audit.acting_as(user, "api")
        self._acting.__enter__()

    def finalize_response(self, request, response, *args, **kwargs):
        acting, self._acting = getattr(self, "_acting", None), None
        if acting is not None:
            acting.__exit__(None, None, None)
        return super().finalize_response(request, response, *args, **kwargs)


class ActionPermissions(ActsAsRequestUser):
    """``ACTION_PERMS = {"retry": [...]}``: the permissions an extra action needs (read by
    HasModelRolePermission); standard actions fall back to the model permissions."""

    ACTION_PERMS: dict[str, list[str]] = {}

    @property
    def required_permissions(self):
        return self.ACTION_PERMS.get(getattr(self, "action", None))


class ExceptionViewSet(ActionPermissions, viewsets.ReadOnlyModelViewSet):
    """The exception queue. Defaults to active rows (open/acknowledged): ``?status=all`` for every row."""

    queryset = ExceptionRecord.objects.select_related("channel", "connection", "status_changed_by").order_by(
        "-last_seen", "-id"
    )
    serializer_class = s.ExceptionSerializer
    filterset_class = ExceptionFilter
    search_fields = ["sku", "order_ref", "title", "dedupe_key"]
    ordering_fields = ["last_seen", "first_seen", "count", "severity"]
    ACTION_PERMS = {
        **{a: ["exceptions_app.change_exceptionrecord"] for a in ("acknowledge", "ignore", "resolve")},
        "map_sku": kinds.permissions("map_sku"),
        "repush": kinds.permissions("repush_stock"),
    }

    def filter_queryset(self, queryset):
        # the list defaults to active rows; a single row is reachable whatever its status
        return queryset if self.detail else super().filter_queryset(queryset)

    def _change(self, request, pk, verb):
        record = self.get_object()
        body = s.StatusChangeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            triage.change_status(record, verb, user=request.user, reason=body.validated_data.get("reason", ""))
        except triage.TriageError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(s.ExceptionSerializer(record).data)

    @extend_schema(request=s.StatusChangeSerializer, responses=s.ExceptionSerializer)
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None):
        return self._change(request, pk, "acknowledge")

    @extend_schema(request=s.StatusChangeSerializer, responses=s.ExceptionSerializer)
    @action(detail=True, methods=["post"])
    def ignore(self, request, pk=None):
        return self._change(request, pk, "ignore")

    @extend_schema(request=s.StatusChangeSerializer, responses=s.ExceptionSerializer)
    @action(detail=True, methods=["post"])
    def resolve(self, request, pk=None):
        return self._change(request, pk, "resolve")

    @extend_schema(request=s.MapSkuSerializer, responses=s.FixResultSerializer)
    @action(detail=True, methods=["post"], url_path="map-sku")
    def map_sku(self, request, pk=None):
        """Fix a sku_mismatch / unknown_sku: create the mapping (suggested or chosen item), re-queue the stock
        push and held orders, acknowledge the exception (and, with ``bulk``, every similar open one); the
        confirmed stock push resolves it."""
        from integration_hub.catalog.models import Item

        record = self.get_object()
        body = s.MapSkuSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            if triage.action_for(record) != "map_sku":
                raise triage.TriageError("this exception is not a SKU problem")
            suggestion = triage.suggest(record)
            if data.get("item"):
                item = Item.objects.filter(sku=data["item"]).first()
                if item is None:
                    raise triage.TriageError(f"no master item with SKU {data['item']!r}")
                spec = None
            else:
                if suggestion.item is None:
                    raise triage.TriageError("no suggestion for this SKU: name the master item")
                item, spec = suggestion.item, suggestion.spec
            if data["bulk"]:
                if spec is None:
                    raise triage.TriageError("bulk-apply needs the suggested transform")
                result = triage.bulk_map_with_transform(record, spec, user=request.user)
            else:
                result = triage.map_sku(record, item, all_channels=data["all_channels"], spec=spec, user=request.user)
        except triage.TriageError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(s.FixResultSerializer(result).data)

    @extend_schema(request=None, responses={202: s.ExceptionSerializer})
    @action(detail=True, methods=["post"])
    def repush(self, request, pk=None):
        """Queue a fresh stock push for a stock_drift exception's SKU on its channel."""
        record = self.get_object()
        try:
            triage.repush_stock(record, user=request.user)
        except triage.TriageError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        record.refresh_from_db()
        return Response(s.ExceptionSerializer(record).data, status=status.HTTP_202_ACCEPTED)


class OrderViewSet(ActionPermissions, viewsets.ReadOnlyModelViewSet):
    queryset = (
        Order.objects.select_related("channel", "warehouse")
        .prefetch_related(Prefetch("lines", queryset=OrderLine.objects.select_related("item")))
        .order_by("-created_at", "-id")
    )
    serializer_class = s.OrderSerializer
    filterset_fields = {
        "state": ["exact", "in"],
        "channel__key": ["exact"],
        "order_number": ["exact"],
        "external_id": ["exact"],
        "created_at": ["gte", "lte"],
        "updated_at": ["gte", "lte"],
    }
    search_fields = ["order_number", "external_id", "idempotency_key", "customer_email"]
    ordering_fields = ["created_at", "updated_at", "placed_at"]
    ACTION_PERMS = {
        "retry": ["orders.view_order", *kinds.permissions("order", "retry")],
        "cancel": ["orders.view_order", *kinds.permissions("order", "cancel")],
    }

    def _record(self, order):
        return ExceptionRecord.objects.filter(dedupe_key=kinds.key(Kind.STUCK_ORDER, order.idempotency_key)).first()

    @extend_schema(
        request=None, responses={202: s.OrderSerializer, 400: OpenApiResponse(description="not possible in this state")}
    )
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        order = self.get_object()
        try:
            triage.retry_order(order, user=request.user, record=self._record(order))
        except triage.TriageError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(s.OrderSerializer(self.get_object()).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=s.CancelSerializer, responses={200: s.OrderSerializer, 400: OpenApiResponse(description="not possible")}
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        order = self.get_object()
        body = s.CancelSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            triage.cancel_order(order, body.validated_data["reason"], user=request.user, record=self._record(order))
        except triage.TriageError as exc:
            raise ValidationError({"detail": str(exc)}) from exc
        return Response(s.OrderSerializer(self.get_object()).data)


CONFIRM_VALUES = ("true", "1", "yes")
CONFIRM_PARAM = OpenApiParameter(
    "confirm",
    bool,
    OpenApiParameter.QUERY,
    required=False,
    description="true: delete. Without it nothing is deleted: the answer is 409 with the "
    "impact preview (which storefront quantities the delete moves).",
)


class PreviewedDestroy:
    """DELETE of a row that feeds storefront stock (mappings, channel rules) needs ``?confirm=true``; without
    it the answer is ``409`` with the impact preview (``{"detail", "impact": {"changed", "lines", "channels",
    "sample"}}``) and nothing is deleted: the console's delete preview, for API clients."""

    @extend_schema(
        parameters=[CONFIRM_PARAM],
        responses={
            204: OpenApiResponse(description="deleted"),
            409: OpenApiResponse(description="not deleted: the impact preview; repeat with ?confirm=true"),
        },
    )
    def destroy(self, request, *args, **kwargs):
        from integration_hub.console import impact
        from integration_hub.inventory.rules import after_rule_deleted

        obj = self.get_object()
        confirmed = str(request.query_params.get("confirm", "")).lower() in CONFIRM_VALUES
        preview, deleted = impact.preview_delete(obj, confirmed=confirmed, after=after_rule_deleted)
        if not deleted:
            lines = preview.lines() or ["no storefront quantity changes"]
            return Response(
                {
                    "detail": "Not deleted: " + "; ".join(lines) + ". Repeat with ?confirm=true to delete.",
                    "impact": impact.as_dict(preview),
                },
                status=status.HTTP_409_CONFLICT,
            )
        return Response(status=status.HTTP_204_NO_CONTENT)


class SkuMappingViewSet(PreviewedDestroy, ActsAsRequestUser, viewsets.ModelViewSet):
    """SKU mappings. Writes re-queue a stock push for the item and acknowledge that SKU's mismatch exceptions
    (the confirmed push resolves them)."""

    queryset = SkuMapping.objects.select_related("item", "channel", "transform").order_by("id")
    serializer_class = s.SkuMappingSerializer
    filterset_fields = {
        "channel__key": ["exact", "isnull"],
        "storefront_sku": ["exact", "startswith"],
        "item__sku": ["exact", "startswith"],
        "active": ["exact"],
    }
    search_fields = ["storefront_sku", "item__sku"]
    ordering_fields = ["storefront_sku", "updated_at"]

    def _after(self, obj, before=None):
        triage.after_mapping_saved(obj, before)

    def perform_create(self, serializer):
        with refused_as_400():
            self._after(serializer.save())

    def perform_update(self, serializer):
        before = audit.snapshot(serializer.instance)
        with refused_as_400():
            self._after(serializer.save(), before)


class TransformViewSet(ActsAsRequestUser, viewsets.ModelViewSet):
    queryset = IdentifierTransform.objects.select_related("connection", "channel").order_by("name")
    serializer_class = s.TransformSerializer
    filterset_fields = ["active", "channel__key", "connection__name"]

    def perform_create(self, serializer):
        with refused_as_400():
            serializer.save()

    perform_update = perform_create


class ChannelStockRuleViewSet(PreviewedDestroy, ActsAsRequestUser, viewsets.ModelViewSet):
    """Which locations feed each channel. Writes re-queue every mapped SKU on the channel."""

    queryset = ChannelStockRule.objects.select_related("channel", "pool").prefetch_related("locations").order_by("id")
    serializer_class = s.ChannelStockRuleSerializer
    filterset_fields = ["mode", "channel__key"]

    def _save(self, serializer):
        from integration_hub.inventory import rules

        instance = serializer.instance
        before = audit.snapshot(instance) if instance is not None else None
        locations = rules.rule_location_codes(instance) if instance is not None else None
        with refused_as_400():
            obj = serializer.save()
            rules.audit_rule_locations(obj, locations)  # m2m: the automatic audit sees only concrete fields
            rules.after_channel_rule_saved(obj, before)

    perform_create = perform_update = _save


class ShippingMapViewSet(ActsAsRequestUser, viewsets.ModelViewSet):
    """Storefront → warehouse shipping methods. Writes re-check orders held for an unmapped method."""

    queryset = ShippingMethodMap.objects.select_related("channel").order_by("id")
    serializer_class = s.ShippingMapSerializer
    filterset_fields = ["channel__key", "storefront_method", "active"]

    def _save(self, serializer):
        from integration_hub.orders.shipping_rules import after_shipping_map_saved

        before = audit.snapshot(serializer.instance) if serializer.instance is not None else None
        with refused_as_400():
            after_shipping_map_saved(serializer.save(), before)

    perform_create = perform_update = _save


class ScheduleViewSet(
    ActsAsRequestUser,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Beat schedules (django-celery-beat jobs): list, read, enable/disable, change the interval or crontab.
    Writes need ``django_celery_beat.change_periodictask`` (admins); every change is audited before/after."""

    queryset = PeriodicTask.objects.select_related("interval", "crontab").order_by("name")
    serializer_class = s.ScheduleSerializer
    filterset_fields = ["enabled", "task"]
    search_fields = ["name", "task"]

    def perform_update(self, serializer):
        with transaction.atomic():
            serializer.save()  # core.beat.apply_schedule; audited by core.beat.track_schedule_changes

    @property
    def required_permissions(self):
        return {
            "run": ["django_celery_beat.change_periodictask"],
            "run_detail": ["django_celery_beat.view_periodictask", "console.view_schedulerun"],
        }.get(getattr(self, "action", None))

    @extend_schema(request=None, responses={202: s.ScheduleRunSerializer})
    @action(detail=True, methods=["post"])
    def run(self, request, pk=None):
        """Send the job's task now (audited); poll ``/api/schedules/runs/<id>/`` for its state and outcome."""
        from integration_hub.console import schedules

        task = self.get_object()
        run = schedules.run_now(task, user=request.user)
        audit.write(task, "update", None, {"run_now": run.celery_task_id, "run": run.pk}, repr_=task.name)
        return Response(s.ScheduleRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=s.ScheduleRunSerializer, filters=False)
    @action(detail=False, methods=["get"], url_path=r"runs/(?P<run_id>[0-9]+)")
    def run_detail(self, request, run_id=None):
        from integration_hub.console.models import ScheduleRun

        run = ScheduleRun.objects.filter(pk=run_id).first()
        if run is None:
            raise Http404("no such run")
        return Response(s.ScheduleRunSerializer(run).data)


class StockLevelViewSet(ActsAsRequestUser, viewsets.ReadOnlyModelViewSet):
    queryset = StockLevel.objects.select_related("item", "location").order_by("id")
    serializer_class = s.StockLevelSerializer
    filterset_fields = {
        "item__sku": ["exact", "in"],
        "location__code": ["exact"],
        "state": ["exact"],
        "quantity": ["lt", "gt"],
    }


class PendingPushViewSet(ActsAsRequestUser, viewsets.ReadOnlyModelViewSet):
    queryset = PendingPush.objects.select_related("item", "channel").order_by("priority", "created_at", "id")
    serializer_class = s.PendingPushSerializer
    filterset_fields = {
        "channel__key": ["exact"],
        "priority": ["exact", "lte"],
        "attempts": ["gte"],
        "item__sku": ["exact"],
    }


class ReportViewSet(ActionPermissions, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Finance reconciliation reports: list, rows (paginated), CSV (streamed), run on demand."""

    queryset = Report.objects.select_related("requested_by").order_by("-started_at", "-id")
    serializer_class = s.ReportSerializer
    filterset_fields = {"kind": ["exact"], "run_date": ["exact", "gte", "lte"], "status": ["exact"]}
    ACTION_PERMS = {
        "rows": ["reconciliation.view_report"],
        "csv": ["reconciliation.view_report", "reconciliation.download_report"],
        "xlsx": ["reconciliation.view_report", "reconciliation.download_report"],
        "run": ["reconciliation.run_report"],
    }

    @extend_schema(responses=s.ReportRowSerializer(many=True), filters=False)
    @action(detail=True, methods=["get"])
    def rows(self, request, pk=None):
        report = self.get_object()
        qs = ReportRow.objects.filter(report_id=report.pk).order_by("id")
        self.paginator.django_paginator_class = partial(KnownCountPaginator, count=report.row_count)  # no COUNT(*)
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(s.ReportRowSerializer(page, many=True).data)

    @extend_schema(
        responses={
            (200, "text/csv"): OpenApiResponse(description="the report as CSV"),
            404: OpenApiResponse(description="no such report, or not finished"),
        },
        filters=False,
    )
    @action(detail=True, methods=["get"])
    def csv(self, request, pk=None):
        report = self.get_object()  # DRF's look-up: a pk that is not a number is a 404, never a ValueError
        if report.status != Report.Status.DONE:
            raise Http404("the report has not finished")
        response = StreamingHttpResponse(recon.iter_csv(report, excel=False), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{recon.csv_filename(report)}"'
        return response

    @extend_schema(
        responses={
            (200, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"): OpenApiResponse(
                description="the report as an Excel workbook (SKUs as text, money 0.00)"
            ),
            404: OpenApiResponse(description="no such report, or not finished"),
        },
        filters=False,
    )
    @action(detail=True, methods=["get"])
    def xlsx(self, request, pk=None):
        from django.http import FileResponse

        from integration_hub.reconciliation import xlsx
        from integration_hub.reconciliation.views import XLSX_TYPE

        report = self.get_object()
        if report.status != Report.Status.DONE:
            raise Http404("the report has not finished")
        return FileResponse(
            xlsx.spooled(report), as_attachment=True, filename=xlsx.filename(report), content_type=XLSX_TYPE
        )

    @extend_schema(request=s.RunReportSerializer, responses={202: s.ReportSerializer})
    @action(detail=False, methods=["post"])
    def run(self, request):
        """Queue a report: answers at once with the report (status ``running``); poll it until ``done``."""
        body = s.RunReportSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        report = recon.queue_report(body.validated_data["kind"], user=request.user)
        return Response(s.ReportSerializer(report).data, status=status.HTTP_202_ACCEPTED)
