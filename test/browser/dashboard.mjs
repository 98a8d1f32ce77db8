// The dashboard in a real browser: node dashboard.mjs URL OUT_DIR NAME,NAME,... SERVICE
// (run.sh starts drover and passes these). Loads the page in headless Chromium, waits for a row
// per service, restarts SERVICE with its button and waits for a new pid and a higher restart
// count, follows its log, filters the table, checks that the page loaded nothing from elsewhere
// and logged no error (a CSP violation is one), saves OUT_DIR/dashboard.png, closes the log
// (drover must survive a stream closed by its reader), then cuts the event stream to see the
// lost-connection banner come and go. Prints "browser: OK" or "browser: FAIL: <what>".
// playwright-core comes from NODE_PATH (run.sh installs it).
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const [url, outDir, namesArg, target] = process.argv.slice(2);
if (!url || !outDir || !namesArg || !target) {
  console.log('usage: node dashboard.mjs URL OUT_DIR NAME,NAME,... SERVICE');
  process.exit(2);
}
const names = namesArg.split(',');
const origin = new URL(url).origin;

let step = 'launching chromium';
let browser;
let page;
const errors = [];   // console errors, page errors, CSP violations
const foreign = [];  // requests to another origin

const row = (name) => `tr[data-service="${name}"]`;

async function cell(name, cls) {
  return (await page.locator(`${row(name)} .${cls}`).textContent()).trim();
}

async function main() {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage'], // root in a container: no sandbox, small /dev/shm
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  await context.route('**/*', (route) => {
    const u = route.request().url();
    if (new URL(u).origin === origin) return route.continue();
    foreign.push(u);
    return route.abort();
  });
  page = await context.newPage();
  page.on('console', (m) => {
    // The browser asks for /favicon.ico on its own; the page has no icon (no image, no data: URL
    // under its CSP), so a 404 there is not the page's error.
    const favicon = (m.location().url || '').endsWith('/favicon.ico');
    if (m.type() === 'error' && !favicon) errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  await page.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`);
    });
  });

  step = `loading ${url}`;
  const res = await page.goto(url, { waitUntil: 'load' });
  if (!res || res.status() !== 200) throw new Error(`status ${res ? res.status() : 'none'}`);
  const csp = res.headers()['content-security-policy'] || '';
  if (!csp.includes("default-src 'self'")) throw new Error(`no "default-src 'self'" CSP (got "${csp}")`);

  step = `waiting for a row per service (${names.join(', ')})`;
  await page.waitForFunction(
    (ns) => ns.every((n) => document.querySelector(`tr[data-service="${n}"]`)), names, { timeout: 15000 });

  step = `waiting for a pid of ${target}`;
  await page.waitForFunction(
    (sel) => /^\d+$/.test(document.querySelector(`${sel} .pid`).textContent.trim()), row(target),
    { timeout: 15000 });
  const pid = await cell(target, 'pid');
  const restarts = Number(await cell(target, 'restarts'));
  for (const cls of ['state', 'uptime', 'last-exit', 'ready', 'health']) await cell(target, cls);

  step = `restarting ${target} (pid ${pid}, restarts ${restarts}) with its button`;
  const button = page.locator(`${row(target)} button[data-action="restart"]`);
  if ((await button.getAttribute('aria-label')) !== `restart ${target}`) throw new Error('no aria-label');
  await button.click();
  await page.waitForFunction(
    ({ sel, pid, restarts }) => {
      const text = (c) => document.querySelector(`${sel} .${c}`).textContent.trim();
      return /^\d+$/.test(text('pid')) && text('pid') !== pid && Number(text('restarts')) > restarts;
    }, { sel: row(target), pid, restarts }, { timeout: 15000 });
  if (await page.locator('#notice').isVisible()) {
    throw new Error(`an error is shown: ${await page.locator('#notice').textContent()}`);
  }

  step = `following the log of ${target}`;
  await page.locator(`${row(target)} button[data-action="logs"]`).click();
  await page.locator('#log-panel').waitFor({ state: 'visible', timeout: 5000 });
  await page.locator('#log-lines .line').first().waitFor({ timeout: 15000 });
  step = `waiting for a stderr line marked as such in the log of ${target}`;
  await page.locator('#log-lines .line.stderr', { hasText: 'warming up' }).first().waitFor({ timeout: 15000 });

  step = 'filtering with "/"';
  await page.locator('body').click({ position: { x: 5, y: 5 } });
  await page.keyboard.press('/');
  await page.keyboard.type(target);
  const shown = await page.locator('#service-rows tr:visible').evaluateAll((rs) => rs.map((r) => r.dataset.service));
  if (shown.length !== 1 || shown[0] !== target) throw new Error(`rows shown: ${shown.join(', ')}`);
  await page.keyboard.press('Escape');
  await page.waitForFunction((n) => document.querySelectorAll('#service-rows tr:not([hidden])').length === n,
    names.length, { timeout: 5000 });

  step = 'checking the banner is hidden';
  if (await page.locator('#conn-banner').isVisible()) {
    throw new Error(`it shows: ${await page.locator('#conn-banner').textContent()}`);
  }

  step = 'checking for console errors, CSP violations and requests elsewhere';
  if (errors.length) throw new Error(errors.join(' | '));
  if (foreign.length) throw new Error(`requests to other origins: ${foreign.join(', ')}`);

  step = 'saving the screenshot';
  await page.screenshot({ path: join(outDir, 'dashboard.png'), fullPage: true });

  // The page closes its log stream: drover must take that in its stride.
  step = `closing the log of ${target}`;
  await page.locator('#log-close').click();
  await page.locator('#log-panel').waitFor({ state: 'hidden', timeout: 5000 });
  if ((await page.evaluate(() => document.activeElement.dataset.action)) !== 'logs') {
    throw new Error('the focus did not go back to the logs button');
  }
  await page.waitForTimeout(500);
  try {
    const live = await fetch(new URL('livez', url), { signal: AbortSignal.timeout(5000) });
    if (live.status !== 200) throw new Error(`status ${live.status}`);
  } catch (err) {
    throw new Error(`drover stopped answering /livez once the log stream was closed (${err.message})`);
  }

  // A failed event stream (aborted here) must raise the banner, and a stream that works again
  // must take it down. Aborted requests log console errors: they are not counted from here on.
  step = 'cutting the event stream: waiting for the banner';
  const cut = (route) => route.abort('connectionreset');
  await page.route('**/api/v1/events*', cut);
  await page.reload({ waitUntil: 'load' });
  const banner = page.locator('#conn-banner');
  await banner.waitFor({ state: 'visible', timeout: 5000 });
  if ((await banner.getAttribute('role')) !== 'status') throw new Error('the banner has no role=status');
  step = 'restoring the event stream: waiting for the banner to go';
  await page.unroute('**/api/v1/events*', cut);
  await banner.waitFor({ state: 'hidden', timeout: 15000 });
  await page.locator(row(target)).waitFor({ timeout: 5000 });
}

const timer = setTimeout(() => {
  console.log(`browser: FAIL: ${step}: the test took more than 120 s`);
  process.exit(1);
}, 120000);

let failed = false;
try {
  await main();
} catch (err) {
  failed = true;
  console.log(`browser: FAIL: ${step}: ${String(err && err.message ? err.message : err).split('\n')[0]}`);
  if (page) await page.screenshot({ path: join(outDir, 'dashboard-fail.png'), fullPage: true }).catch(() => {});
}
if (browser) await browser.close().catch(() => {});
clearTimeout(timer);
if (!failed) console.log('browser: OK');
process.exit(failed ? 1 : 0);
