"""The SFCC emulator's Omnichannel Inventory Impex routes (availability imports: full loads), mixed into
:class:`connectors.sandbox.sfcc.SFCCEmulator` next to the OCI availability routes, over the same OCI records.

Follows Salesforce's Inventory Impex RAML (``inventory/impex`` 1.1.15, published in the commerce-sdk repository's
``testIntegration/stagingApis/inventory/impex``: ``impex.raml``, ``inventory-impex-description.md``, the
``ImportsCommon`` types). Routes (below ``/sfcc``), scope ``sfcc.inventory.impex-inventory.rw``:

  POST /inventory/impex/v1/organizations/{org}/availability-records/imports
       submitInventoryImport ``{"fileName", "fileFormat"?: "JSON", "fileEncoding"?: "GZIP", "fileHash"?,
       "fileHashType"?: SHA-256 | SHA-512, "linkDuration"?: 1–60 minutes}`` → 200 ``{"importId",
       "importStatusLink", "uploadLink", "uploadMethod": "POST", "uploadLinkExpirationUTC"}``; status WAITING
  POST …/availability-records/imports/uploadlink/{uploadLinkId}
       postUploadImportFile, ``multipart/form-data`` with one file part → 200 ``{"status": "PENDING", "importId"}``;
       404 unknown link, 409 file already received, 410 link expired
  GET  …/availability-records/imports/{importId}/status
       getAvailabilityImportStatus → ``{"importId", "status", "validation": {"status", "errors"}, "upload":
       {"fileName"}, "import": {"startTimeUTC", "endTimeUTC", "recordsProcessedCount", "recordsReadCount",
       "recordsSkippedCount", "fullResults": {"href", "exportResultExpirationUTC"}}}``
  GET  …/availability-records/imports/{importId}/file-content
       downloadAvailabilityImportResultsFile: NDJSON, a status line (``COMPLETED_WITHOUT_ERRORS`` |
       ``COMPLETED_WITH_PARTIAL_FAILURES`` | ``FAILED``) then one ``{"recordId", "locationId", "sku", "message"}``
       line per refused record; 409 while the import runs

The file is NDJSON in either layout, never both: high-performance (every record carries its ``locationId``) or
legacy (a ``{"location", "mode": "UPDATE"}`` header line, then the records of that location). Processing is
asynchronous: after the upload the import is PENDING, then RUNNING, and COMPLETED after ``delay`` seconds (control
``configure_impex``), when its records are applied (the newest ``effectiveDate`` wins, as for batch updates; a
``recordId`` already imported is skipped). What the sandbox decides where the published material is silent (its
reading): a line that is not a JSON object, a layout mix, a header with another mode, a bad hash or an unreadable
gzip fail the whole file (status FAILED, ``validation.errors``, nothing applied); a record without recordId / sku, a
SKU with a forbidden character (``: \\ < > ; % /`` or white space), an ``onHand`` that is not a non-negative number,
an ``effectiveDate`` that is not ISO 8601, an unknown location or an unknown property is one error line of the
result file and the other records still land.
"""

from __future__ import annotations

import gzip
import hashlib
import json as _json
import re
import threading
import uuid
from datetime import UTC, datetime, timedelta

from ..multipart import first_file_part
from .server import Response, route
from .sfcc_scapi import problem

IMPORTS = r"/inventory/impex/v1/organizations/(?P<org>[^/]+)/availability-records/imports"
SCOPE = "sfcc.inventory.impex-inventory"
REQUEST_KEYS = {"fileName", "fileFormat", "fileEncoding", "fileHash", "fileHashType", "linkDuration"}
RECORD_KEYS = {"recordId", "sku", "onHand", "effectiveDate", "futures", "safetyStockCount", "locationId"}
BAD_SKU = re.compile(r"[:\\<>;%/\s]")
HASHES = {"SHA-256": hashlib.sha256, "SHA-512": hashlib.sha512}


def _utc(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ImpexRoutes:
    """Mixed into the SFCC emulator; uses its lock, tokens, ``_oci_auth``, ``oci`` and ``oci_applied``."""

    def reset_impex(self) -> None:
        self.impex_delay = 0.2  # seconds from upload to COMPLETED
        self.imports: dict[str, dict] = {}
        self.impex_generation = getattr(self, "impex_generation", 0) + 1  # a reset orphans running timers

    def control_configure_impex(self, payload):
        with self.lock:
            self.impex_delay = max(0.0, float(payload.get("delay", self.impex_delay)))
        return {"delay": self.impex_delay}

    def control_imports(self, payload):
        """Every import with its status document and the file as uploaded (lines)."""
        with self.lock:
            return {i: {**self._import_status(imp), "lines": imp["lines"]} for i, imp in self.imports.items()}

    def _import(self, req) -> dict:
        imp = self.imports.get(req.params["id"])
        if imp is None or imp["org"] != req.params["org"]:
            raise problem(404, "entity-not-found", "Entity Not Found", f"No import with ID '{req.params['id']}'.")
        return imp

    @route("POST", IMPORTS)
    def impex_submit_import(self, req):
        org = req.params["org"]
        self._oci_auth(req, SCOPE, write=True)
        body = req.json()
        if not isinstance(body, dict) or not isinstance(body.get("fileName"), str) or not body["fileName"]:
            raise problem(400, "invalid-request-parameter", "Invalid Request Parameter", "fileName is required.")
        extra = set(body) - REQUEST_KEYS
        if extra:
            raise problem(
                400,
                "invalid-request-parameter",
                "Invalid Request Parameter",
                f"Unknown properties: {', '.join(sorted(extra))}.",
            )
        if (
            body.get("fileFormat", "JSON") != "JSON"
            or body.get("fileEncoding", "GZIP") != "GZIP"
            or body.get("fileHashType", "SHA-256") not in HASHES
        ):
            raise problem(
                400,
                "invalid-request-parameter",
                "Invalid Request Parameter",
                "fileFormat must be JSON, fileEncoding GZIP, fileHashType SHA-256 or SHA-512.",
            )
        duration = body.get("linkDuration", 60)
        if isinstance(duration, bool) or not isinstance(duration, int) or not 1 <= duration <= 60:
            raise problem(
                400, "invalid-request-parameter", "Invalid Request Parameter", "linkDuration is 1 to 60 minutes."
            )
        import_id = str(uuid.uuid4())
        now = datetime.now(UTC)
        base = f"/inventory/impex/v1/organizations/{org}/availability-records/imports"
        with self.lock:
            self.imports[import_id] = {
                "org": org,
                "id": import_id,
                "request": body,
                "status": "WAITING",
                "lines": [],
                "expires": now + timedelta(minutes=duration),
                "validation": [],
                "errors": [],
                "read": 0,
                "processed": 0,
                "skipped": 0,
                "start": None,
                "end": None,
            }
        return Response(
            200,
            {
                "importId": import_id,
                "importStatusLink": f"{base}/{import_id}/status",
                "uploadLink": f"{base}/uploadlink/{import_id}",
                "uploadMethod": "POST",
                "uploadLinkExpirationUTC": _utc(now + timedelta(minutes=duration)),
            },
        )

    @route("POST", IMPORTS + r"/uploadlink/(?P<id>[^/]+)")
    def impex_upload(self, req):
        self._oci_auth(req, SCOPE, write=True)
        with self.lock:
            imp = self._import(req)
            if imp["status"] != "WAITING":
                raise problem(
                    409,
                    "file-already-received",
                    "File Already Received",
                    f"The file of import '{imp['id']}' was already received.",
                )
            if datetime.now(UTC) > imp["expires"]:
                imp["status"] = "EXPIRED"
                raise problem(410, "expired-upload-link", "Expired Upload Link", "The upload link has expired.")
            content = first_file_part(req.body, req.header("Content-Type"))
            if content is None:
                raise problem(
                    400,
                    "invalid-request-parameter",
                    "Invalid Request Parameter",
                    "The body must be multipart/form-data with the import file.",
                )
            imp["status"], imp["start"] = "PENDING", datetime.now(UTC)
            self._validate_file(imp, content)
            generation, delay = self.impex_generation, self.impex_delay
        timer = threading.Timer(delay, self._run_import, args=(imp["id"], generation))
        timer.daemon = True
        timer.start()
        return Response(200, {"status": "PENDING", "importId": imp["id"]})

    def _validate_file(self, imp: dict, content: bytes) -> None:
        """File-level checks at upload (caller holds the lock): fills ``imp["lines"]`` or ``imp["validation"]``."""
        request = imp["request"]
        if request.get("fileEncoding") == "GZIP":
            try:
                content = gzip.decompress(content)
            except (OSError, EOFError):
                imp["validation"].append("The file is not a readable GZIP stream.")
                return
        if request.get("fileHash"):
            digest = HASHES[request.get("fileHashType", "SHA-256")](content).hexdigest()
            if digest != str(request["fileHash"]).lower():
                imp["validation"].append("The file hash does not match fileHash.")
                return
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            imp["validation"].append("The file is not UTF-8.")
            return
        lines, layouts = [], set()
        for n, raw in enumerate(text.split("\n"), start=1):
            if not raw.strip():
                continue
            try:
                doc = _json.loads(raw)
            except ValueError:
                doc = None
            if not isinstance(doc, dict):
                imp["validation"].append(f"Line {n} is not a JSON object.")
                continue
            if "location" in doc or "mode" in doc:
                layouts.add("legacy")
                if (
                    set(doc) != {"location", "mode"}
                    or doc.get("mode") != "UPDATE"
                    or not isinstance(doc.get("location"), str)
                ):
                    imp["validation"].append(f"Line {n}: a location header is {{\"location\", \"mode\": \"UPDATE\"}}.")
            elif "locationId" in doc:
                layouts.add("high-performance")
            lines.append(doc)
        if layouts == {"legacy", "high-performance"}:
            imp["validation"].append("The file mixes the legacy and the high-performance layout.")
        if not lines:
            imp["validation"].append("The file holds no records.")
        imp["lines"] = lines

    def _run_import(self, import_id: str, generation: int) -> None:
        with self.lock:
            imp = self.imports.get(import_id)
            if imp is None or generation != self.impex_generation or imp["status"] != "PENDING":
                return
            imp["end"] = datetime.now(UTC)
            if imp["validation"]:
                imp["status"] = "FAILED"
                return
            location = None
            for doc in imp["lines"]:
                if "mode" in doc:
                    location = doc["location"]
                    continue
                imp["read"] += 1
                loc = doc.get("locationId", location)
                why = self._impex_problem(doc, loc)
                if why:
                    imp["errors"].append(
                        {"recordId": doc.get("recordId"), "locationId": loc, "sku": doc.get("sku"), "message": why}
                    )
                    continue
                key = f"impex:{doc['recordId']}"
                if key in self.oci_applied:
                    imp["skipped"] += 1
                    continue
                stored = self.oci[loc].setdefault(
                    doc["sku"], {"onHand": 0, "reserved": 0, "safetyStockCount": 0, "effectiveDate": ""}
                )
                when = doc.get("effectiveDate")
                if "onHand" in doc and (
                    not when
                    or not stored["effectiveDate"]
                    or datetime.fromisoformat(when) >= datetime.fromisoformat(stored["effectiveDate"])
                ):
                    stored["onHand"] = int(doc["onHand"])
                    stored["effectiveDate"] = when or stored["effectiveDate"]
                if "safetyStockCount" in doc:
                    stored["safetyStockCount"] = int(doc["safetyStockCount"])
                self.oci_applied.add(key)
                imp["processed"] += 1
            imp["status"] = "COMPLETED"

    def _impex_problem(self, doc: dict, location) -> str | None:
        extra = set(doc) - RECORD_KEYS
        if extra:
            return f"unknown properties {', '.join(sorted(extra))}"
        if not isinstance(doc.get("recordId"), str) or not doc["recordId"]:
            return "'recordId' is required"
        sku = doc.get("sku")
        if not isinstance(sku, str) or not sku or BAD_SKU.search(sku):
            return "'sku' is required and cannot contain : \\ < > ; % / or white space"
        if "onHand" in doc:
            q = doc["onHand"]
            if isinstance(q, bool) or not isinstance(q, (int, float)) or q < 0:
                return "'onHand' quantity must be a positive value"
        if "safetyStockCount" in doc:
            q = doc["safetyStockCount"]
            if isinstance(q, bool) or not isinstance(q, (int, float)) or q < 0:
                return "'safetyStockCount' must be a positive value"
        if doc.get("effectiveDate") is not None:
            try:
                datetime.fromisoformat(str(doc["effectiveDate"]))
            except ValueError:
                return "'effectiveDate' must be an ISO 8601 date-time"
        if not isinstance(location, str) or location not in self.oci:
            return f"location {location!r} does not exist"
        return None

    def _import_status(self, imp: dict) -> dict:
        base = f"/inventory/impex/v1/organizations/{imp['org']}/availability-records/imports/{imp['id']}"
        body = {
            "importId": imp["id"],
            "status": imp["status"],
            "validation": {"status": "FAILED" if imp["validation"] else "Success", "errors": list(imp["validation"])},
            "upload": {"fileName": imp["request"]["fileName"]},
            "import": {
                "recordsProcessedCount": imp["processed"],
                "recordsReadCount": imp["read"],
                "recordsSkippedCount": imp["skipped"],
            },
        }
        if imp["start"]:
            body["import"]["startTimeUTC"] = _utc(imp["start"])
        if imp["end"]:
            body["import"]["endTimeUTC"] = _utc(imp["end"])
        if imp["status"] == "COMPLETED":
            body["import"]["fullResults"] = {
                "href": f"{base}/file-content",
                "exportResultExpirationUTC": _utc(imp["end"] + timedelta(days=1)),
            }
        return body

    @route("GET", IMPORTS + r"/(?P<id>[^/]+)/status")
    def impex_status(self, req):
        self._oci_auth(req, SCOPE, write=False)
        with self.lock:
            imp = self._import(req)
            if (
                imp["status"] == "PENDING"
                and imp["start"]
                and datetime.now(UTC) - imp["start"] > timedelta(seconds=0.05)
            ):
                view = {**self._import_status(imp), "status": "RUNNING"}  # picked up, not finished
                return Response(200, view)
            return Response(200, self._import_status(imp))

    @route("GET", IMPORTS + r"/(?P<id>[^/]+)/file-content")
    def impex_results(self, req):
        self._oci_auth(req, SCOPE, write=False)
        with self.lock:
            imp = self._import(req)
            if imp["status"] not in ("COMPLETED", "FAILED"):
                raise problem(
                    409, "import-in-progress", "Import In Progress", f"Import '{imp['id']}' is still running."
                )
            if imp["status"] == "FAILED":
                lines = [{"status": "FAILED"}]
            else:
                result = (
                    "COMPLETED_WITHOUT_ERRORS"
                    if not imp["errors"]
                    else "FAILED"
                    if not imp["processed"] and not imp["skipped"]
                    else "COMPLETED_WITH_PARTIAL_FAILURES"
                )
                lines = [{"status": result}, *imp["errors"]]
        return Response(200, "\n".join(_json.dumps(x) for x in lines) + "\n", content_type="application/x-ndjson")
