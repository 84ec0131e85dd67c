// Opens one page in headless Chromium and prints what the page left in window.__result as JSON
// on stdout (tests/api/server/browser.rs). Usage: node drive.cjs URL
// CHROMIUM_BIN and PLAYWRIGHT_CORE_DIR (deploy/local/setup test) name the browser and the
// playwright-core package that drives it over the DevTools protocol.
"use strict";

const { chromium } = require(process.env.PLAYWRIGHT_CORE_DIR);

async function main(url) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    const page = await browser.newPage();
    const console = [];
    page.on("console", (message) => console.push(`${message.type()}: ${message.text()}`));
    page.on("pageerror", (error) => console.push(`pageerror: ${error.message}`));
    await page.goto(url);
    await page.waitForFunction(() => window.__done === true, null, { timeout: 60000 });
    const result = await page.evaluate(() => window.__result);
    result.console = console;
    process.stdout.write(JSON.stringify(result));
  } finally {
    await browser.close();
  }
}

main(process.argv[2]).catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
