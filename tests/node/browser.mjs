// Drives Debian's chromium for the Rust browser tests (tests/tests/browser.rs).
//
//   node browser.mjs <base-url> [page-path]
//
// Opens <base-url><page-path> (default /test/page.html) in a 1280x800 viewport, prints
// {"ready":true}, then reads one JSON request per line on stdin: {"id":N,"expr":"<js
// expression>"} evaluates it in the page (awaiting promises), {"id":N,"screenshot":"<file>"}
// saves a PNG of the page; each is answered with {"id":N,"result":...} or
// {"id":N,"error":"..."}. Exits when stdin closes.
import { chromium } from 'playwright-core';
import readline from 'node:readline';

const base = process.argv[2];
const pagePath = process.argv[3] || '/test/page.html';
if (!base) {
  console.error('usage: node browser.mjs <base-url>');
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
page.on('console', (m) => process.stderr.write(`[page] ${m.text()}\n`));
page.on('pageerror', (e) => process.stderr.write(`[page error] ${e}\n`));
await page.goto(`${base}${pagePath}`);
console.log(JSON.stringify({ ready: true }));

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let id = null;
  try {
    const request = JSON.parse(line);
    id = request.id;
    const result = request.screenshot
      ? (await page.screenshot({ path: request.screenshot, fullPage: true }), request.screenshot)
      : await page.evaluate(request.expr);
    console.log(JSON.stringify({ id, result: result ?? null }));
  } catch (e) {
    console.log(JSON.stringify({ id, error: String(e && e.message ? e.message : e) }));
  }
}
await browser.close();
