"""``POST /api/items/import/``: the item import (:mod:`.item_import`) for scripts — multipart ``file`` (CSV or
XLSX), optional ``dry_run`` (true/false) and ``connection`` (whose SKU rules apply). Needs ``catalog.add_item``
and ``catalog.change_item`` (admins); session users need the CSRF token, token users do not."""

from __future__ import annotations

from dataclasses import asdict

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from integration_hub.core.models import Connection

from . import item_import


class ItemImportRequest(serializers.Serializer):
    file = serializers.FileField(help_text="CSV or XLSX, header row required")
    dry_run = serializers.BooleanField(required=False, default=False)
    connection = serializers.CharField(required=False, help_text="connection name whose SKU rules apply")


class RowErrorOut(serializers.Serializer):
    line = serializers.IntegerField()
    reason = serializers.CharField()
    row = serializers.DictField(child=serializers.CharField())


class ItemImportResponse(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    rejected = serializers.IntegerField()
    queued = serializers.IntegerField()
    dry_run = serializers.BooleanField()
    fatal = serializers.CharField()
    errors = RowErrorOut(many=True)
    errors_not_listed = serializers.IntegerField()


class ItemImportApiView(APIView):
    parser_classes = [MultiPartParser]
    required_permissions = ["catalog.add_item", "catalog.change_item"]

    @extend_schema(
        request={"multipart/form-data": ItemImportRequest},
        responses={
            200: ItemImportResponse,
            400: OpenApiResponse(
                description="no file, an unknown connection, or a file that cannot be imported at all (its reason)"
            ),
        },
        summary="Import items (CSV / XLSX)",
    )
    def post(self, request):
        upload = request.FILES.get("file")
        if upload is None:
            return Response(
                {"detail": "send the item file as multipart field 'file'"}, status=status.HTTP_400_BAD_REQUEST
            )
        conn = None
        if request.data.get("connection"):
            conn = Connection.objects.filter(name=request.data["connection"]).first()
            if conn is None:
                return Response(
                    {"detail": f"unknown connection {request.data['connection']!r}"}, status=status.HTTP_400_BAD_REQUEST
                )
        dry = str(request.data.get("dry_run", "")).lower() in item_import.TRUE
        r = item_import.import_items(
            upload, user=request.user, dry_run=dry, filename=upload.name or "", connection=conn
        )
        body = {
            "created": r.created,
            "updated": r.updated,
            "unchanged": r.unchanged,
            "rejected": r.error_count,
            "queued": r.queued,
            "dry_run": r.dry_run,
            "fatal": r.fatal,
            "errors": [asdict(e) for e in r.errors],
            "errors_not_listed": r.errors_truncated,
        }
        return Response(body, status=status.HTTP_400_BAD_REQUEST if r.fatal else status.HTTP_200_OK)
