// One flow of a REST client generated from docs/openapi.json (docs/openapi.md): log in, create a
// ticket, list tickets. Types come from `schema.d.ts`, which openapi-typescript writes from the
// document; openapi-fetch makes the calls. Compiled with `tsc --strict`, so a request or an
// answer that does not fit the document fails before it runs. The integration test
// (tests/api/rest_contract/client.rs) runs it against Envoy and reads the JSON it prints.
//
// Reads SUPPORTDESK_URL, SUPPORTDESK_ACCOUNT, SUPPORTDESK_EMAIL and SUPPORTDESK_PASSWORD.

import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

// The little of Node the flow uses (no @types/node needed).
declare const process: {
  env: Record<string, string | undefined>;
  exit(code: number): never;
};

type Ticket = components["schemas"]["supportdesk.v1.Ticket"];

function setting(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === "") {
    throw new Error(`${name} is not set`);
  }
  return value;
}

async function main(): Promise<void> {
  const client = createClient<paths>({ baseUrl: setting("SUPPORTDESK_URL") });

  const login = await client.POST("/v1/auth:login", {
    body: {
      account: setting("SUPPORTDESK_ACCOUNT"),
      email: setting("SUPPORTDESK_EMAIL"),
      password: setting("SUPPORTDESK_PASSWORD"),
    },
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
  const created = await client.POST("/v1/tickets", {
    headers: { ...headers, "Idempotency-Key": "generated-client-flow-1" },
    body: draft,
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
    }),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
