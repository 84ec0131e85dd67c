// A desk organized through the generated REST client (docs/tickets.md): an admin defines a custom
// field, raises a ticket with tags and a value, adds a tag, lists by the filter language with the
// list's size, saves a view, lists by it and counts it. Compiled with `tsc --strict` against the
// types openapi-typescript writes from docs/openapi.json, so a shape the document gets wrong (a
// map of values, a view's scope, a count) fails before it runs; every request is checked against
// the protos' declared rules first, as flow.ts does. The integration test
// (tests/api/rest_contract/client.rs) runs it against Envoy and reads the JSON it prints.
//
// Reads SUPPORTDESK_URL, SUPPORTDESK_ACCOUNT, SUPPORTDESK_EMAIL and SUPPORTDESK_PASSWORD (an
// admin: only admins define fields).

import { readFileSync } from "node:fs";
import type { JsonValue } from "@bufbuild/protobuf";
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";
import { RequestChecker } from "./validate.js";

type Ticket = components["schemas"]["supportdesk.v1.Ticket"];
type CustomField = components["schemas"]["supportdesk.v1.CustomField"];
type View = components["schemas"]["supportdesk.v1.View"];

function setting(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === "") {
    throw new Error(`${name} is not set`);
  }
  return value;
}

const checker = new RequestChecker(
  readFileSync(
    process.env["SUPPORTDESK_DESCRIPTORS"] ?? new URL("../supportdesk.binpb", import.meta.url),
  ),
);

/** Refuses, before it is sent, a request that breaks a rule its proto declares. */
function checked<T>(messageName: string, request: T): T {
  const violations = checker.violations(messageName, request as JsonValue);
  if (violations.length > 0) {
    throw new Error(`${messageName} not sent: ${violations.join(", ")} break its declared rules`);
  }
  return request;
}

/** The answer's data, or an error naming the step and what the server said. */
function data<T>(step: string, answer: { data?: T; error?: unknown; response: Response }): T {
  if (answer.data === undefined) {
    throw new Error(`${step} failed: ${answer.response.status} ${JSON.stringify(answer.error)}`);
  }
  return answer.data;
}

async function main(): Promise<void> {
  const client = createClient<paths>({ baseUrl: setting("SUPPORTDESK_URL") });
  const login = data(
    "login",
    await client.POST("/v1/auth:login", {
      body: checked("supportdesk.v1.LoginRequest", {
        account: setting("SUPPORTDESK_ACCOUNT"),
        email: setting("SUPPORTDESK_EMAIL"),
        password: setting("SUPPORTDESK_PASSWORD"),
      }),
    }),
  );
  const token = login.tokens?.accessToken;
  if (token === undefined) {
    throw new Error("the login answer carries no access token");
  }
  const headers = { Authorization: `Bearer ${token}` };

  const plan: CustomField = {
    key: "plan",
    title: "Plan",
    kind: "CUSTOM_FIELD_KIND_SINGLE_CHOICE",
    choices: ["free", "pro"],
  };
  const field = data(
    "define the field",
    await client.POST("/v1/customFields", {
      headers,
      body: checked("supportdesk.v1.CreateCustomFieldRequest", { customField: plan }).customField,
    }),
  );

  const draft: Ticket = {
    subject: "Refund for the pro plan",
    description: "Charged twice this month",
    requesterEmail: "jane@example.com",
    tags: ["VIP"],
    customFields: { plan: "pro" },
  };
  const created = data(
    "create",
    await client.POST("/v1/tickets", {
      headers: { ...headers, "Idempotency-Key": "generated-client-organize-1" },
      body: checked("supportdesk.v1.CreateTicketRequest", { ticket: draft }).ticket,
    }),
  );
  const id = created.id ?? "";
  const tagged = data(
    "add a tag",
    await client.POST("/v1/tickets/{id}:addTags", {
      headers,
      params: { path: { id } },
      body: { tags: ["refund"] },
    }),
  );

  const filter = 'tags:"refund" AND custom_fields.plan = "pro"';
  const listed = data(
    "list by a filter",
    await client.GET("/v1/tickets", { headers, params: { query: { filter, pageSize: 10 } } }),
  );

  const refunds: View = {
    name: "Pro refunds",
    scope: "VIEW_SCOPE_ACCOUNT",
    filter,
    orderBy: "update_time desc",
  };
  const view = data(
    "save a view",
    await client.POST("/v1/views", {
      headers,
      body: checked("supportdesk.v1.CreateViewRequest", { view: refunds }).view,
    }),
  );
  const viewId = view.id ?? "";
  const byView = data(
    "list by the view",
    await client.GET("/v1/tickets", { headers, params: { query: { viewId } } }),
  );
  const counted = data(
    "count the view",
    await client.GET("/v1/views:count", { headers, params: { query: { viewIds: [viewId] } } }),
  );

  console.log(
    JSON.stringify({
      fieldKey: field.key,
      createdId: id,
      createdTags: created.tags,
      createdValues: created.customFields,
      tagsAfterAdding: tagged.tags,
      filteredIds: (listed.tickets ?? []).map((ticket) => ticket.id),
      filteredTotal: listed.totalSize,
      filteredEstimated: listed.totalSizeEstimated ?? false,
      viewIds: (byView.tickets ?? []).map((ticket) => ticket.id),
      counts: (counted.counts ?? []).map((count) => ({
        viewId: count.viewId,
        count: count.count,
        capped: count.capped ?? false,
      })),
      viewId,
    }),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
