// Salesforce's own B2C Commerce client (commerce-sdk, Products = SCAPI Admin Products API) run against the hub's SFCC
// sandbox: the searchProducts call the connector's catalogue audit makes. Input (argv[2], JSON): {baseUri, token,
// organizationId, siteId}. Output (stdout, JSON): one entry per call {call, ok, status?, data?}. Called by
// tests/contract/test_sfcc_commerce_sdk.py.
"use strict";
const { Products } = require("commerce-sdk");

async function run() {
  const input = JSON.parse(process.argv[2]);
  const products = new Products({
    baseUri: input.baseUri,
    headers: { authorization: `Bearer ${input.token}` },
    parameters: { organizationId: input.organizationId, siteId: input.siteId, shortCode: "sandbox" },
  });
  const sellable = { termQuery: { fields: ["type"], operator: "one_of", values: ["item", "variant"] } };
  const calls = [
    ["searchProducts", () => products.searchProducts({ body: { query: sellable, sorts: [{ field: "id", sortOrder: "asc" }],
      limit: 200, offset: 0 } })],
    ["searchProducts:page2", () => products.searchProducts({ body: { query: sellable, sorts: [{ field: "id" }],
      limit: 2, offset: 2 } })],
    ["searchProducts:limit201", () => products.searchProducts({ body: { query: { matchAllQuery: {} }, limit: 201 } })],
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
