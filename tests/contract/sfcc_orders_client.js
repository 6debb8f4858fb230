// Salesforce's own B2C Commerce client (commerce-sdk, Orders = SCAPI Admin Orders API) run against the hub's SFCC
// sandbox. Input (argv[2], JSON): {baseUri, token, organizationId, siteId, since, orderNo, omsEvent}. Output (stdout, JSON): one
// entry per call {call, ok, status?, data?}. Called by tests/contract/test_sfcc_commerce_sdk.py.
"use strict";
const { Orders } = require("commerce-sdk");

async function run() {
  const input = JSON.parse(process.argv[2]);
  const orders = new Orders({
    baseUri: input.baseUri,
    headers: { authorization: `Bearer ${input.token}` },
    parameters: { organizationId: input.organizationId, siteId: input.siteId, shortCode: "sandbox" },
  });
  const no = input.orderNo;
  const calls = [
    ["getOrders", () => orders.getOrders({ parameters: {
      lastModifiedDateFrom: input.since, sortBy: "last_modified_date", sortOrder: "asc",
      exportStatus: ["ready", "exported", "failed"], limit: 200, offset: 0 } })],
    ["getOrder", () => orders.getOrder({ parameters: { orderNo: no } })],
    ["updateOrder", () => orders.updateOrder({ parameters: { orderNo: no },
      body: { c_trackingNumbers: "SDK-TRK-1", c_carrier: "DPD" } })],
    ["updateOrderShippingStatus", () => orders.updateOrderShippingStatus({ parameters: { orderNo: no },
      body: { status: "shipped" } })],
    ["updateOrderExportStatus", () => orders.updateOrderExportStatus({ parameters: { orderNo: no },
      body: { status: "exported" } })],
    // the connector's optional oms-status-events (one shipped fulfillment event per tracked parcel)
    ["createOmsStatusEvent", () => orders.createOmsStatusEvent({ parameters: { orderNo: no },
      body: { fulfillmentEvent: input.omsEvent } })],
    ["createOmsStatusEvent:noTrackingUrl", () => orders.createOmsStatusEvent({ parameters: { orderNo: no },
      body: { fulfillmentEvent: { ...input.omsEvent, trackingUrl: undefined } } })],
    ["getOrder:after", () => orders.getOrder({ parameters: { orderNo: no } })],
    // the spec's limits: the sandbox must refuse what Salesforce refuses
    ["getOrders:limit201", () => orders.getOrders({ parameters: { limit: 201 } })],
    ["getOrders:window", () => orders.getOrders({ parameters: { limit: 200, offset: 9801 } })],
    ["getOrder:missing", () => orders.getOrder({ parameters: { orderNo: "00000000" } })],
  ];
  const out = [];
  for (const [name, fn] of calls) {
    try {
      const data = await fn();
      out.push({ call: name, ok: true, data: data === undefined ? null : data });
    } catch (err) {
      let body = null;
      if (err.response) {
        try { body = await err.response.json(); } catch (e) { body = null; }
      }
      out.push({ call: name, ok: false, status: err.response ? err.response.status : null, body, error: String(err) });
    }
  }
  process.stdout.write(JSON.stringify(out));
}

run().catch((err) => { process.stderr.write(String(err && err.stack || err)); process.exit(1); });
