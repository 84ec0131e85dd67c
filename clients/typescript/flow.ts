// One flow of a REST client generated from docs/openapi.json (docs/openapi.md): log in, create a
// ticket, list tickets. Types come from `schema.d.ts`, which openapi-typescript writes from the
// document; openapi-fetch makes the calls. Compiled with `tsc --strict`, so a request or an
// answer that does not fit the document fails before it runs. The integration test
// (tests/api/rest_contract/client.rs) runs it against Envoy and reads the JSON it prints.
//
// Every request is first checked against the rules the protos declare (validate.ts), with the
// descriptor set generate-client writes beside dist/ (or SUPPORTDESK_DESCRIPTORS).
//
// Reads SUPPORTDESK_URL, SUPPORTDESK_ACCOUNT, SUPPORTDESK_EMAIL and SUPPORTDESK_PASSWORD.

import { readFileSync } from "node:fs";
import type { JsonValue } from "@bufbuild/protobuf";
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";
import { RequestChecker } from "./validate.js";

type Ticket = components["schemas"]["supportdesk.v1.Ticket"];

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

async function main(): Promise<void> {
  const client = createClient<paths>({ baseUrl: setting("SUPPORTDESK_URL") });

  const login = await client.POST("/v1/auth:login", {
    body: checked("supportdesk.v1.LoginRequest", {
      account: setting("SUPPORTDESK_ACCOUNT"),
      email: setting("SUPPORTDESK_EMAIL"),
      password: setting("SUPPORTDESK_PASSWORD"),
    }),
  });
  if (login.data === undefined) {
    throw new Error(`login failed: ${login.response.status} ${JSON.stringify(login.error)}`);
  }
  const token: string | undefined = login.data.tokens?.accessToken;
  if (token === undefined) {
    throw new Error("the login answer carries no access token");
  }
  const headers = { Authorization: `Bearer ${token}` };

  const draft: Ticket = {
    subject: "Printer on fire",
    description: "Smoke everywhere, from the generated client",
    requesterEmail: "jane@example.com",
    priority: "TICKET_PRIORITY_HIGH",
  };
  // A subject over its 200 characters never leaves the client: the check names the field.
  const refusedLocally = checker.violations("supportdesk.v1.CreateTicketRequest", {
    ticket: { ...draft, subject: "x".repeat(201) },
  } as JsonValue);
  const created = await client.POST("/v1/tickets", {
    headers: { ...headers, "Idempotency-Key": "generated-client-flow-1" },
    body: checked("supportdesk.v1.CreateTicketRequest", { ticket: draft }).ticket,
  });
  if (created.data === undefined) {
    throw new Error(`create failed: ${created.response.status} ${JSON.stringify(created.error)}`);
  }

  const listed = await client.GET("/v1/tickets", {
    headers,
    params: { query: { pageSize: 10, priorities: ["TICKET_PRIORITY_HIGH"] } },
  });
  if (listed.data === undefined) {
    throw new Error(`list failed: ${listed.response.status} ${JSON.stringify(listed.error)}`);
  }

  // An error, as the document types it: google.rpc.Status with its details.
  const missing = await client.GET("/v1/tickets/{id}", {
    headers,
    params: { path: { id: "00000000-0000-7000-8000-000000000000" } },
  });
  const reason = missing.error?.details?.[0]?.["reason"];

  console.log(
    JSON.stringify({
      loginStatus: login.response.status,
      createStatus: created.response.status,
      location: created.response.headers.get("location"),
      created: { id: created.data.id, subject: created.data.subject, status: created.data.status },
      listStatus: listed.response.status,
      listedIds: (listed.data.tickets ?? []).map((ticket) => ticket.id),
      missingStatus: missing.response.status,
      missingReason: reason,
      refusedLocally,
    }),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
