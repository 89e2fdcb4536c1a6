// The shared part of airlock's browser scenarios (tests/browser/*.mjs), run
// by tests/e2e/browser.py under pytest. A scenario is a short list of named
// steps; this module starts Debian's Chromium through playwright-core, gives
// each person an isolated browser context, screenshots every step, collects
// what must never happen on our pages (console errors, uncaught exceptions,
// Content-Security-Policy violations, dialogs) and reports everything as one
// JSON line, so the Python side can say which step failed and why.
//
// Protocol (stdout carries JSON lines only; humans read stderr):
//   {"ask": "<event>", ...}   the scenario needs Python (e.g. to upload files
//                             with the tus client): Python answers one JSON
//                             line on stdin ({"error": "..."} if it failed).
//   {"result": {...}}         the last line: ok, steps, failedStep, error,
//                             problems, expected, data. Exit status 0 iff ok.
//
// Environment (set by tests/e2e/browser.py):
//   AIRLOCK_URL              the airlock under test, http://127.0.0.1:PORT
//   AIRLOCK_ARTIFACTS        directory for NN-step.png screenshots
//   AIRLOCK_PLAYWRIGHT_CORE  the playwright-core package directory
//   AIRLOCK_PARAMS           JSON: users, passwords, workspace, ... per scenario
//   AIRLOCK_CHROMIUM         the browser (default /usr/bin/chromium)
import { createInterface } from 'node:readline';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

export const CHROMIUM = process.env.AIRLOCK_CHROMIUM || '/usr/bin/chromium';
// Debian's Chromium on a machine with no network but loopback: without the
// background-networking flags it keeps trying Google's hosts at every start.
// --headless and --no-sandbox come from Playwright's own launch options
// (headless: true, chromiumSandbox: false), named here too so the list is
// the whole story.
export const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
export const PHONE = { width: 390, height: 844 };
const STEP_TIMEOUT_MS = 30_000;

function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set (run the scenario through pytest: tests/e2e/browser.py)`);
  return v;
}

function slug(s) {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, '-').slice(0, 80).replace(/^-|-$/g, '');
}

class StepFailed extends Error {}

export class Run {
  constructor() {
    this.url = need('AIRLOCK_URL').replace(/\/$/, '');
    this.artifacts = need('AIRLOCK_ARTIFACTS');
    this.params = JSON.parse(process.env.AIRLOCK_PARAMS || '{}');
    this.steps = [];
    this.problems = [];   // unexpected: each one fails the run
    this.expected = [];   // matched by expecting(): reported, not failed
    this.expectations = null;
    this.current = 'start';
    this.data = {};
    this.failedStep = null;
    this.error = null;
    this.browser = null;
    this.pages = [];
    this._replies = [];
    this._waiters = [];
    mkdirSync(this.artifacts, { recursive: true });
    this._stdin = createInterface({ input: process.stdin });
    this._stdin.on('line', (line) => {
      const w = this._waiters.shift();
      if (w) w(line); else this._replies.push(line);
    });
  }

  async launch() {
    const pw = await import(pathToFileURL(join(need('AIRLOCK_PLAYWRIGHT_CORE'), 'index.mjs')).href);
    // launch() gives Chromium a new, empty --user-data-dir of its own (a
    // temporary directory removed at close); each person then gets an
    // isolated context (cookies, storage) inside it.
    this.browser = await pw.chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      chromiumSandbox: false,
      args: CHROMIUM_FLAGS.filter((f) => f !== '--headless' && f !== '--no-sandbox'),
      timeout: 60_000,
    });
    return this;
  }

  // A browser context for one person ("researcher", "approver", ...), with
  // every page in it watched. Options go to browser.newContext (viewport...).
  async person(who, options = {}) {
    const context = await this.browser.newContext({ baseURL: this.url, ...options });
    // The page reports securitypolicyviolation events through a binding: an
    // init script and a binding run in the page's main world without being
    // subject to its CSP (Chromium's DevTools protocol injects them), so the
    // detector does not need the policy loosened (never set bypassCSP).
    await context.exposeBinding('__airlockCspViolation', (src, v) =>
      this._problem('csp', `${v.directive} blocked ${v.blocked || '(inline)'} on ${v.document}`, who, src.page));
    await context.addInitScript(() => {
      document.addEventListener('securitypolicyviolation', (e) => {
        window.__airlockCspViolation({
          directive: e.violatedDirective, blocked: e.blockedURI, document: e.documentURI,
          sample: e.sample,
        });
      }, true);
    });
    context.on('page', (p) => this._watch(p, who));
    const page = await context.newPage();
    page.who = who;
    return page;
  }

  _watch(page, who) {
    page.who = who;
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    this.pages.push(page);
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      const at = m.location() && m.location().url;
      // Chromium asks every origin for /favicon.ico by itself; the airlock
      // has none and answers 404, which is no fault of a page.
      if (at && new URL(at, this.url).pathname === '/favicon.ico') return;
      this._problem('console', at ? `${m.text()} (${at})` : m.text(), who, page);
    });
    page.on('pageerror', (e) => this._problem('pageerror', String(e && e.message || e), who, page));
    page.on('dialog', async (d) => {
      this._problem('dialog', `${d.type()}: ${d.message()}`, who, page);
      await d.dismiss().catch(() => {});
    });
  }

  _problem(kind, text, who, page) {
    const p = { kind, text, who, step: this.current, url: page ? page.url() : null };
    if (this.expectations) {
      const e = this.expectations.find((x) => x.kind === kind && x.match.test(text));
      if (e) {
        e.seen += 1;
        this.expected.push(p);
        return;
      }
    }
    this.problems.push(p);
  }

  // Runs fn while problems matching `list` ([{kind, match: RegExp,
  // optional}]) are expected; each one not optional must then have been seen
  // at least once (within settleMs): how a scenario shows that the detectors
  // work and that a refusal was a refusal.
  async expecting(list, fn, settleMs = 5000) {
    this.expectations = list.map((x) => ({ ...x, seen: 0 }));
    try {
      const v = await fn();
      const deadline = Date.now() + settleMs;
      // Console events arrive after the action that caused them: give
      // optional ones a moment too, so a late one is not taken as unexpected.
      const optionalUntil = Date.now() + 500;
      while (Date.now() < deadline && (this.expectations.some((x) => !x.seen && !x.optional) ||
          (Date.now() < optionalUntil && this.expectations.some((x) => !x.seen))))
        await new Promise((r) => setTimeout(r, 50));
      const missing = this.expectations.filter((x) => !x.seen && !x.optional);
      if (missing.length)
        throw new Error(`expected ${missing.map((x) => `a ${x.kind} report matching ${x.match}`).join(', ')}; none came`);
      return v;
    } finally {
      this.expectations = null;
    }
  }

  // One named step: fn(page) runs, then a full-page screenshot
  // NN-<who>-<name>.png is kept; a failure is screenshotted as
  // NN-<who>-<name>-FAILED.png and ends the scenario naming this step.
  // Problems seen during the step fail it too.
  async step(name, page, fn) {
    const n = this.steps.length + 1;
    const label = page && page.who ? `${page.who}: ${name}` : name;
    this.current = label;
    const rec = { n, name: label, ok: false, screenshot: null, ms: 0 };
    this.steps.push(rec);
    const t0 = Date.now();
    const base = `${String(n).padStart(2, '0')}-${slug(label)}`;
    process.stderr.write(`step ${n}: ${label}\n`);
    try {
      const v = await fn(page);
      await new Promise((r) => setTimeout(r, 100)); // late console events
      if (this.problems.length)
        throw new Error(`the page reported: ${this.problems.map((p) => `${p.kind}: ${p.text}`).join(' | ')}`);
      if (page) rec.screenshot = await this.screenshot(page, base);
      rec.ok = true;
      return v;
    } catch (e) {
      if (page && !page.isClosed())
        rec.screenshot = await this.screenshot(page, `${base}-FAILED`).catch(() => null);
      this.failedStep = `${n} (${label})`;
      this.error = String(e && e.stack || e).split('\n').slice(0, 6).join('\n');
      throw new StepFailed(this.error);
    } finally {
      rec.ms = Date.now() - t0;
    }
  }

  // A full-page PNG in the artifacts directory; returns its path.
  async screenshot(page, name) {
    const path = join(this.artifacts, `${name}.png`);
    await page.screenshot({ path, fullPage: true });
    return path;
  }

  // Asks the Python side for something (see the protocol above).
  async ask(event, payload = {}) {
    process.stdout.write(JSON.stringify({ ask: event, ...payload }) + '\n');
    const line = this._replies.length ? this._replies.shift()
      : await new Promise((resolve) => this._waiters.push(resolve));
    if (line === undefined || line === null) throw new Error(`no answer from Python to ${event}`);
    const reply = JSON.parse(line);
    if (reply.error) throw new Error(`Python could not do ${event}: ${reply.error}`);
    return reply;
  }

  async finish() {
    if (this.browser) await this.browser.close().catch(() => {});
    this._stdin.close();
    const ok = !this.failedStep && !this.problems.length;
    if (!this.failedStep && this.problems.length) {
      this.failedStep = this.problems[0].step;
      this.error = 'the page reported: ' + this.problems.map((p) => `${p.kind}: ${p.text}`).join(' | ');
    }
    const result = {
      ok, steps: this.steps, failedStep: this.failedStep, error: this.error,
      problems: this.problems, expected: this.expected, data: this.data,
      browser: this.browser ? this.browser.version() : null,
    };
    process.stdout.write(JSON.stringify({ result }) + '\n');
    process.exitCode = ok ? 0 : 1;
  }
}

// Runs a scenario: main(run) with the browser started, then the report.
export async function scenario(main) {
  const run = new Run();
  try {
    await run.launch();
    await main(run);
  } catch (e) {
    if (!(e instanceof StepFailed)) {
      run.failedStep = run.failedStep || run.current;
      run.error = String(e && e.stack || e).split('\n').slice(0, 6).join('\n');
    }
  }
  await run.finish();
}

export function check(cond, message) {
  if (!cond) throw new Error(message);
}

// ---------------------------------------------------------------------------
// What a person does on airlock's pages.

// The local accounts' login form; ends on the workspaces page.
export async function login(page, user, password) {
  await page.goto('/login');
  await page.fill('#username', user);
  await page.fill('#password', password);
  await Promise.all([page.waitForURL((u) => u.pathname === '/'), page.click('form[action="/login"] button[type=submit]')]);
  check(await page.locator('h1').innerText() === 'Your workspaces', 'after login the workspaces page was expected');
  check((await page.locator('header .who').innerText()).includes(user), `the header does not name ${user}`);
}

// Keycloak 26's own login page (theme "keycloak.v2"): the airlock's
// "Log in with Keycloak" link leads there; this fills it in and waits for the
// way back to the airlock's origin. Used by the OIDC scenarios.
export async function keycloakLogin(page, user, password, airlockUrl) {
  await page.waitForSelector('#kc-login');
  await page.fill('#username', user);
  await page.fill('#password', password);
  await Promise.all([
    page.waitForURL((u) => u.origin === new URL(airlockUrl).origin, { timeout: 60_000 }),
    page.click('#kc-login'),
  ]);
}

// From the workspace page, the "Bring new data" form for an Uploaded
// datasource; returns its name (ds-<32 hex>, made by the API) on its upload page.
export async function createUploadedDatasource(page, workspace, fields) {
  await page.goto(`/workspaces/${encodeURIComponent(workspace)}`);
  await page.click('a.button:has-text("Bring new data")');
  await page.waitForURL((u) => u.pathname === `/workspaces/${workspace}/new`);
  const values = {
    displayName: 'An uploaded example dataset',
    description: 'An example dataset which the user has brought for themselves.',
    license: 'This sample data may ONLY be used for demos',
    organisation: 'Some Organisation', contactName: 'Joe Bloggs',
    contactRole: 'Research Engineer', project: 'd4e6', ...fields,
  };
  for (const [k, v] of Object.entries(values)) await page.fill(`#${k}`, v);
  const upload = new RegExp(`^/workspaces/${workspace}/datasources/(ds-[0-9a-f]{32})/upload$`);
  await Promise.all([page.waitForURL((u) => upload.test(u.pathname)), page.click('button:has-text("Create and go to the upload")')]);
  const name = upload.exec(new URL(page.url()).pathname)[1];
  check(/^ds-[0-9a-f]{32}$/.test(name), `the datasource's name ${name} is not ds-<32 hex>`);
  return name;
}

// On the upload page: waits (the page reloads itself while the upload area is
// prepared) until the "All files uploaded" form is there.
export async function waitForUploadForm(page, timeout = 60_000) {
  await page.locator('button:has-text("All files uploaded")').waitFor({ timeout });
}

// Presses "All files uploaded"; ends on the datasource's detail page.
export async function allFilesUploaded(page, workspace, name) {
  await Promise.all([
    page.waitForURL((u) => u.pathname === `/workspaces/${workspace}/datasources/${name}`),
    page.click('button:has-text("All files uploaded")'),
  ]);
}

// The Stage shown on a detail or review page.
export async function stageOf(page) {
  return (await page.locator('dl.facts dt:text-is("Stage") + dd').innerText()).trim();
}

// Reloads the page until it shows `stage` (or one of several).
export async function waitForStage(page, stages, timeout = 60_000) {
  const want = [].concat(stages);
  const deadline = Date.now() + timeout;
  let last = null;
  for (;;) {
    last = await stageOf(page);
    if (want.includes(last)) return last;
    if (Date.now() > deadline) throw new Error(`stage ${last}, not ${want.join(' or ')}, after ${timeout} ms`);
    await page.waitForTimeout(500);
    await page.reload();
  }
}

// The approval queue, reloaded until `name` waits there; opens its review page.
export async function openReview(page, name, timeout = 60_000) {
  await page.goto('/approvals');
  const link = page.locator(`a[href="/approvals/${name}"]`);
  const deadline = Date.now() + timeout;
  while (!(await link.count())) {
    if (Date.now() > deadline) throw new Error(`${name} did not appear in the approval queue`);
    await page.waitForTimeout(500);
    await page.reload();
  }
  await Promise.all([page.waitForURL((u) => u.pathname === `/approvals/${name}`), link.first().click()]);
}

// The Files table of a detail or review page: [{path, size, sha256}], and the
// manifest digest shown above it.
export async function manifestOf(page) {
  const files = await page.$$eval('table', (tables) => {
    const t = tables.find((x) => [...x.querySelectorAll('th')].map((h) => h.textContent).join('|') === 'Path|Size|SHA-256');
    if (!t) return null;
    return [...t.querySelectorAll('tbody tr')].map((r) => {
      const c = r.querySelectorAll('td');
      return { path: c[0].textContent, size: c[1].textContent, sha256: c[2].textContent };
    });
  });
  check(files, 'no Files table (Path, Size, SHA-256) on the page');
  const digest = await page.locator('p:has-text("Manifest digest") code.hash').innerText();
  return { files, digest };
}

// On a review page: approves (as `type` when the page offers a choice) and
// checks the page took it.
export async function approve(page, name, type) {
  const form = page.locator(`form[action="/approvals/${name}"]:has(input[name=decision][value=approve])`);
  check(await form.count() === 1, 'no Approve form on the review page');
  if (type && await form.locator('select[name=type]').count())
    await form.locator('select[name=type]').selectOption(type);
  // The answer is a 303 back to the same page: wait for that page itself,
  // not for a URL the page already has.
  const at = (method) => (r) => r.request().method() === method && new URL(r.url()).pathname === `/approvals/${name}`;
  const reloaded = page.waitForResponse(at('GET'));
  const [resp] = await Promise.all([page.waitForResponse(at('POST')), form.locator('button:has-text("Approve")').click()]);
  check(resp.status() === 303, `the approval answered ${resp.status()}, not 303`);
  await reloaded;
  await page.waitForLoadState('load');
  const refused = page.locator('.card.error');
  if (await refused.count()) throw new Error(`the approval was refused: ${await refused.first().innerText()}`);
}

// On a review page: the manifest lists exactly `want` ({path: sha256}) and
// shows its digest. Returns what manifestOf read.
export async function checkManifest(page, want, whose) {
  const m = await manifestOf(page);
  const expect = Object.entries(want).sort();
  const got = m.files.map((f) => [f.path, f.sha256]).sort();
  check(JSON.stringify(got) === JSON.stringify(expect),
    `the manifest shows ${JSON.stringify(got)}, ${whose} ${JSON.stringify(expect)}`);
  check(/^[0-9a-f]{64}$/.test(m.digest), `manifest digest ${m.digest}`);
  return m;
}

// approve(), then the Decisions table shows `user`'s approval as `type`.
export async function approveAndSeeDecision(page, name, user, type) {
  await approve(page, name, type);
  const row = page.locator('h2:text-is("Decisions") + .table-wrap tbody tr', { hasText: user });
  check(await row.count() >= 1, `the Decisions table does not show ${user}'s approval`);
  check((await row.first().innerText()).includes(type), `${user}'s decision is not recorded as ${type}`);
}

// Horizontal overflow of the page at its current viewport: the document
// wider than the window, and the widest elements that stick out (for the
// failure message). Scrolling inside a .table-wrap is by design, not overflow.
export async function horizontalOverflow(page) {
  return page.evaluate(() => {
    const vw = document.documentElement.clientWidth;
    const out = [];
    for (const el of document.body.querySelectorAll('*')) {
      if (el.closest('.table-wrap') && !el.classList.contains('table-wrap')) continue;
      const r = el.getBoundingClientRect();
      if (r.right > vw + 0.5 || r.left < -0.5)
        out.push(`${el.tagName.toLowerCase()}${el.id ? '#' + el.id : ''}${el.className ? '.' + String(el.className).replace(/ /g, '.') : ''} [${Math.round(r.left)}..${Math.round(r.right)}]`);
    }
    return {
      viewport: vw,
      documentWidth: document.documentElement.scrollWidth,
      bodyWidth: document.body.scrollWidth,
      offenders: out.slice(0, 8),
    };
  });
}

// ---------------------------------------------------------------------------
// Keycloak, and the upload widget (docs/frontend.md, "The upload widget").

// From the airlock's /login: "Log in with Keycloak", Keycloak's own form, and
// back on the airlock's workspaces page (the callback answers 303 to /).
export async function loginWithKeycloak(page, user, password, airlockUrl) {
  await page.goto('/login');
  await Promise.all([
    page.waitForURL((u) => u.origin !== new URL(airlockUrl).origin, { timeout: 60_000 }),
    page.click('a.button:has-text("Log in with Keycloak")'),
  ]);
  await keycloakLogin(page, user, password, airlockUrl);
  await page.waitForURL((u) => u.origin === new URL(airlockUrl).origin && u.pathname === '/', { timeout: 60_000 });
  check(await page.locator('h1').innerText() === 'Your workspaces', 'after the Keycloak login the workspaces page was expected');
  check((await page.locator('header .who').innerText()).includes(user), `the header does not name ${user}`);
}

// Limits the page's uploads to `bytesPerSecond` through Chromium's own network
// emulation (the DevTools protocol, Network.emulateNetworkConditions: request
// bodies are read at that rate), so a test can act while an upload is under
// way on a fast loopback. null lifts the limit. Returns the CDP session.
export async function throttleUploads(page, bytesPerSecond) {
  if (!page.__airlockCdp) {
    page.__airlockCdp = await page.context().newCDPSession(page);
    await page.__airlockCdp.send('Network.enable');
  }
  await page.__airlockCdp.send('Network.emulateNetworkConditions', {
    offline: false, latency: 0, downloadThroughput: -1,
    uploadThroughput: bytesPerSecond || -1,
  });
  return page.__airlockCdp;
}

// The widget's row of one file (its data-path).
export function widgetRow(page, path) {
  return page.locator(`[data-testid="upload-item"][data-path="${path.replace(/["\\]/g, '\\$&')}"]`);
}

// The widget's rows: [{path, state, sha256, status, value, max}].
export async function widgetRows(page) {
  return page.$$eval('[data-testid="upload-item"]', (rows) => rows.map((r) => {
    const bar = r.querySelector('[data-testid="upload-progress"]');
    return {
      path: r.dataset.path, state: r.dataset.state, sha256: r.dataset.sha256 || '',
      status: r.querySelector('[data-testid="upload-item-status"]').textContent,
      value: bar ? Number(bar.value) : 0, max: bar ? Number(bar.max) : 0,
    };
  }));
}

// Waits until every one of `paths` has a row in state done (failing at once
// on a row in state error, with its message); returns the rows.
export async function waitForWidgetDone(page, paths, timeout = 120_000) {
  await page.waitForFunction((want) => {
    const rows = [...document.querySelectorAll('[data-testid="upload-item"]')];
    const bad = rows.find((r) => r.dataset.state === 'error');
    if (bad) return true; // reported below
    return want.every((p) => rows.some((r) => r.dataset.path === p && r.dataset.state === 'done'));
  }, paths, { timeout, polling: 100 });
  const rows = await widgetRows(page);
  const bad = rows.filter((r) => r.state === 'error');
  check(!bad.length, `the widget failed: ${bad.map((r) => `${r.path}: ${r.status}`).join('; ')}`);
  return rows;
}

// Waits until the row of `path` shows at least `min` (a fraction) of its
// file sent; returns the fraction then.
export async function waitForProgress(page, path, min, timeout = 120_000) {
  await page.waitForFunction(([p, m]) => {
    const r = [...document.querySelectorAll('[data-testid="upload-item"]')].find((x) => x.dataset.path === p);
    if (!r) return false;
    if (r.dataset.state === 'error' || r.dataset.state === 'done') return true; // judged below
    const bar = r.querySelector('[data-testid="upload-progress"]');
    return bar && bar.max > 0 && bar.value / bar.max >= m;
  }, [path, min], { timeout, polling: 50 });
  const row = (await widgetRows(page)).find((r) => r.path === path);
  check(row.state === 'uploading', `${path} is ${row.state} (${row.status}) before reaching ${Math.round(min * 100)}%`);
  return row.value / row.max;
}

// Keeps every text the widget's status line shows from now on (a later
// announcement replaces a note at once); statusLog(page) returns them.
export async function recordStatus(page) {
  await page.evaluate(() => {
    const el = document.querySelector('[data-testid="upload-status"]');
    window.__airlockStatusLog = [el.textContent];
    new MutationObserver(() => window.__airlockStatusLog.push(el.textContent))
      .observe(el, { childList: true, characterData: true, subtree: true });
  });
}

export async function statusLog(page) {
  return page.evaluate(() => window.__airlockStatusLog || []);
}

// Records the tus requests the page makes (method, URL, Upload-Offset, and
// the answer's status and Upload-Offset), in order; `mark` labels the ones
// that follow (e.g. 'after-restart').
export function watchTus(page, endpointPart = '/uploads') {
  const log = { mark: 'start', requests: [] };
  page.on('request', (r) => {
    if (!r.url().includes(endpointPart)) return;
    const h = r.headers();
    const rec = {
      mark: log.mark, method: h['x-http-method-override'] || r.method(), url: new URL(r.url()).pathname,
      offset: h['upload-offset'] !== undefined ? Number(h['upload-offset']) : null, status: null, answerOffset: null,
    };
    log.requests.push(rec);
    r.response().then((resp) => {
      if (!resp) return;
      rec.status = resp.status();
      const o = resp.headers()['upload-offset'];
      if (o !== undefined) rec.answerOffset = Number(o);
    }).catch(() => { rec.status = 'failed'; });
  });
  return log;
}
