"""The commercetools sandbox answers through its indexes exactly what a full scan answers (issue 12: per-request cost
independent of what the project holds): product projections (SKU index under ``or`` / nested predicates, the
id-ordered walk) and the Import API listing / summary (per-container state and resourceKey indexes). In process,
no HTTP, no database."""

import copy
import json
import random
import time

from connectors.sandbox.commercetools.emulator import CommercetoolsEmulator
from connectors.sandbox.commercetools.imports import IMPORT_STATES
from connectors.sandbox.server import Request


def _emulator() -> CommercetoolsEmulator:
    emu = CommercetoolsEmulator()
    emu._auth = lambda req: {}
    return emu


def _get(params: dict | None = None, **query) -> Request:
    return Request(
        "GET",
        "/x",
        {k: v if isinstance(v, list) else [str(v)] for k, v in query.items()},
        {},
        b"",
        {"project": "demo", **(params or {})},
    )


def _post(body: dict, **params) -> Request:
    return Request("POST", "/x", {}, {}, json.dumps(body).encode(), {"project": "demo", **params})


def test_product_queries_through_the_indexes_answer_what_a_full_scan_answers():
    rnd = random.Random(1)
    emu = _emulator()
    skus = [f"S{i:04d}" for i in range(600)]
    emu.control_seed_catalog({"channels": ["web"], "skus": skus[:400], "quantity": None})
    emu.control_seed_catalog(
        {
            "channels": ["web"],
            "products": [
                {"key": f"M{i}", "skus": skus[400 + i * 5 : 405 + i * 5], "published": i % 3 != 0} for i in range(40)
            ],
        }
    )
    ids = sorted(emu.products)

    def full_scan(req):
        staged = req.q("staged", "false").lower() == "true"
        view = (lambda p: emu.staged_products.get(p["id"], p)) if staged else (lambda p: p)
        return emu._query(
            req,
            lambda: [view(p) for p in emu.products.values() if staged or p["published"]],
            default_sort=["createdAt asc"],
        ).body

    for _ in range(250):
        some = ", ".join(f'"{s}"' for s in rnd.sample(skus, rnd.randint(1, 30)))
        wheres = [
            f"masterVariant(sku in ({some})) or variants(sku in ({some}))",
            f'id > "{rnd.choice(ids)}"',
            f'key = "M{rnd.randint(0, 39)}"',
            f'masterVariant(sku = "{rnd.choice(skus)}")',
            f"variants(sku in ({some})) and published = true",
        ]
        query = {
            "where": rnd.sample(wheres, rnd.randint(0, 2)),
            "limit": rnd.choice([0, 1, 5, 20, 500]),
            "offset": rnd.choice([0, 0, 3, 100]),
            "withTotal": rnd.choice(["true", "false"]),
            "staged": rnd.choice(["true", "false"]),
        }
        if rnd.random() < 0.7:
            query["sort"] = [rnd.choice(["id asc", "id desc", "createdAt asc", "key asc"])]
        req = _get(**query)
        assert emu.product_projections(req).body == full_scan(req), query


def test_import_listing_and_summary_through_the_indexes_answer_what_a_full_scan_answers():
    rnd = random.Random(2)
    emu = _emulator()
    emu.control_seed_catalog({"channels": ["web"], "skus": [f"S{i}" for i in range(50)], "quantity": None})
    for key in ("c1", "c2"):
        emu.import_container_create(_post({"key": key, "resourceType": "inventory"}))

    def full_scan(key, req):
        limit, offset, state = int(req.q("limit", "20")), int(req.q("offset", "0")), req.q("state", "")
        ops = [
            o
            for o in emu.import_operations.values()
            if o["importContainerKey"] == key
            and (not state or o["state"] == state)
            and (not req.q("resourceKey", "") or o["resourceKey"] == req.q("resourceKey", ""))
        ]
        for spec in reversed(req.query.get("sort") or []):
            fld, direction = spec.split()
            ops.sort(key=lambda o, f=fld: o.get(f) or "", reverse=direction == "desc")
        page = [
            {k: v for k, v in o.items() if req.q("debug", "") == "true" or k != "unresolvedReferences"}
            for o in ops[offset : offset + limit]
        ]
        return {"limit": limit, "offset": offset, "count": len(page), "total": len(ops), "results": copy.deepcopy(page)}

    for _ in range(200):
        if rnd.random() < 0.4:  # a submission: valid, refused at once, unresolved until a channel appears, rejected
            emu.import_delay = rnd.choice([0, 0, 0.01, 0.05])
            resources = []
            for _ in range(rnd.randint(1, 20)):
                sku, ch = f"S{rnd.randint(0, 60)}", rnd.choice(["web", "web", "gone", "new"])
                res = {
                    "key": f"k-{sku}-{ch}",
                    "sku": sku,
                    "quantityOnStock": rnd.randint(0, 9),
                    "supplyChannel": {"typeId": "channel", "key": ch},
                }
                if rnd.random() < 0.05:
                    res.pop("sku")
                resources.append(res)
            emu.import_reject_skus = {f"S{rnd.randint(0, 60)}" for _ in range(3)}
            emu.inventory_import(_post({"type": "inventory", "resources": resources}, key=rnd.choice(["c1", "c2"])))
        elif rnd.random() < 0.1 and "new" not in emu.channel_by_key:
            emu._new_channel("new")
        elif rnd.random() < 0.2:
            time.sleep(0.02)
        key = rnd.choice(["c1", "c2"])
        query = {"limit": rnd.choice([0, 1, 7, 500]), "offset": rnd.choice([0, 0, 2, 30])}
        if rnd.random() < 0.6:
            query["state"] = rnd.choice(IMPORT_STATES[:5])
        if rnd.random() < 0.5:
            query["sort"] = rnd.sample(
                ["createdAt desc", "createdAt asc", "lastModifiedAt desc", "resourceKey asc", "state desc"],
                rnd.randint(1, 2),
            )
        if rnd.random() < 0.2:
            query["resourceKey"] = f"k-S{rnd.randint(0, 60)}-web"
        if rnd.random() < 0.3:
            query["debug"] = "true"
        req = _get({"key": key}, **query)
        assert emu.import_operations_list(req).body == full_scan(key, req), query
        summary = emu.import_summary(_get({"key": key})).body  # (lands the due operations first)
        states = dict.fromkeys(IMPORT_STATES, 0)
        for o in emu.import_operations.values():
            if o["importContainerKey"] == key:
                states[o["state"]] += 1
        assert summary == {"states": states, "total": sum(states.values())}
    assert emu.import_by_state["c1"]["imported"] and emu.import_by_state["c1"]["unresolved"]  # the run covered them
