"""Item master screens: the Items page (search, filters, which systems know each item, its open exceptions) and
the item import (admins). Thin: the work is in :mod:`.item_import`, :mod:`.item_queries`."""

from __future__ import annotations

from django import forms
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.views.generic import TemplateView

from integration_hub.core.models import Connection
from integration_hub.core.roles import PermissionRequired

from . import item_import, item_queries

PAGE_SIZE = 50


class ItemImportForm(forms.Form):
    file = forms.FileField(label="CSV or XLSX file")
    connection = forms.ModelChoiceField(
        Connection.objects.all(),
        required=False,
        label="SKU rules of",
        help_text="empty: every active identifier transform",
    )
    dry_run = forms.BooleanField(
        required=False, label="Dry run: check every row and show what would change, save nothing"
    )

    def clean_file(self):
        f = self.cleaned_data["file"]
        if f.size > 200 * 1024 * 1024:
            raise forms.ValidationError("The file is larger than 200 MB: split it.")
        return f


class ItemListView(PermissionRequired, TemplateView):
    permission_required = "catalog.view_item"
    template_name = "catalog/item_list.html"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        g = self.request.GET
        filters = item_queries.ItemFilters(
            q=g.get("q", "").strip()[:100],
            attribute=g.get("attribute", "").strip()[:40],
            value=g.get("value", "").strip()[:100],
            state=g.get("state", ""),
            exception=g.get("exception", ""),
        )
        page = Paginator(item_queries.items(filters), PAGE_SIZE).get_page(g.get("page"))
        ctx.update(
            filters=filters,
            page=page,
            rows=item_queries.decorate(list(page.object_list)),
            query=filters.querystring(),
            kinds=item_queries.EXCEPTION_FILTERS,
            can_import=self.request.user.has_perms(["catalog.add_item", "catalog.change_item"]),
        )
        return ctx


class ItemImportView(PermissionRequired, TemplateView):
    permission_required = ("catalog.add_item", "catalog.change_item")
    template_name = "catalog/item_import.html"

    def get_context_data(self, **kwargs):
        ctx = super().get_context_data(**kwargs)
        ctx.setdefault("form", ItemImportForm())
        ctx["columns"] = item_import.COLUMNS
        return ctx

    def post(self, request):
        form = ItemImportForm(request.POST, request.FILES)
        if not form.is_valid():
            return self.render_to_response(self.get_context_data(form=form), status=400)
        upload = form.cleaned_data["file"]
        result = item_import.import_items(
            upload,
            user=request.user,
            dry_run=form.cleaned_data["dry_run"],
            filename=upload.name or "",
            connection=form.cleaned_data["connection"],
        )
        if request.POST.get("format") == "csv":
            response = HttpResponse(item_import.error_report_csv(result), content_type="text/csv")
            response["Content-Disposition"] = 'attachment; filename="item-import-errors.csv"'
            return response
        return self.render_to_response(
            self.get_context_data(form=ItemImportForm(), result=result), status=400 if result.fatal else 200
        )
