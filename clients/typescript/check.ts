// Checks requests from the command line with the client's RequestChecker (validate.ts): reads the
// descriptor set named by its argument and, on standard input, one JSON object per line,
// {"message": a full message name, "request": base64 of the encoded request}, and prints one
// line per case, {"violations": [field paths]}. The declared-rules test
// (tests/api/cross_cutting/declared_rules.rs) sends the service and this the same cases.
//   node dist/check.js supportdesk.binpb < cases.jsonl

import { readFileSync } from "node:fs";
import { base64Decode } from "@bufbuild/protobuf/wire";
import { RequestChecker } from "./validate.js";

interface Case {
  message: string;
  request: string;
}

async function main(): Promise<void> {
  const descriptors = process.argv[2];
  if (descriptors === undefined) {
    throw new Error("usage: node dist/check.js DESCRIPTOR_SET < CASES");
  }
  const checker = new RequestChecker(readFileSync(descriptors));
  let input = "";
  const decoder = new TextDecoder();
  for await (const chunk of process.stdin) {
    input += typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
  }
  const verdicts = input
    .split("\n")
    .filter((line) => line.trim() !== "")
    .map((line) => {
      const { message, request } = JSON.parse(line) as Case;
      return JSON.stringify({ violations: checker.violations(message, base64Decode(request)) });
    });
  console.log(verdicts.join("\n"));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
