// What a browser must refuse on airlock's pages
// (tests/e2e/test_browser_flows.py::test_script_stays_text_and_cross_site_forms_are_refused):
// a display name with markup in it renders as text and runs nothing; the
// harness's own CSP detector sees a blocked inline script; forms on a page
// of another origin that post to the airlock answer 403 and change nothing.
// Params: workspace, researcher, passwords, hostile (the markup),
// crossSite [{label, url}] (pages served by Python from other origins).
import { scenario, check, login, createUploadedDatasource, stageOf } from './lib.mjs';

await scenario(async (run) => {
  const P = run.params;
  const ws = P.workspace;
  const res = await run.person('researcher');

  // Nothing of the hostile text may become an element or run: no script
  // element but the upload widget's own two files (on the upload page once
  // it is at stage Uploading), no element the markup asked for, and the text
  // shown as is.
  const WIDGET = ['/static/tus.min.js', '/static/upload.js'];
  const inert = async (p, where) => {
    const scripts = await p.evaluate(() => [...document.scripts].map((s) => s.src || `inline: ${s.text.slice(0, 60)}`));
    const allowed = where === 'upload page' ? WIDGET.map((x) => new URL(x, run.url).href) : [];
    check(scripts.every((s) => allowed.includes(s)), `${where}: the page has a <script> element: ${JSON.stringify(scripts)}`);
    check(await p.locator('img, iframe, svg').count() === 0, `${where}: the markup made an element`);
    check(await p.evaluate(() => window.__airlockPwned === undefined), `${where}: the injected script ran`);
    check((await p.locator('main').innerText()).includes(P.hostile), `${where}: the display name is not shown as text`);
  };

  await run.step('log in through the form', res, (p) => login(p, P.researcher, P.passwords[P.researcher]));

  const name = await run.step('creates a datasource whose display name is markup', res, async (p) => {
    const n = await createUploadedDatasource(p, ws, { displayName: P.hostile });
    check((await p.locator('h1').innerText()) === `Upload: ${P.hostile}`, 'the upload page title is not the literal name');
    await inert(p, 'upload page');
    return n;
  });
  run.data.datasource = name;

  await run.step('the details and the workspace list show it as text', res, async (p) => {
    await p.goto(`/workspaces/${ws}/datasources/${name}`);
    await inert(p, 'details');
    check(await p.locator('h1').innerText() === P.hostile, 'the details title is not the literal name');
    await p.goto(`/workspaces/${ws}`);
    await inert(p, 'workspace');
  });

  await run.step('an inline script is blocked and reported, a dialog is seen (the detectors work)', res, async (p) => {
    await run.expecting([
      { kind: 'csp', match: /script-src|default-src/ },
      { kind: 'console', match: /Content Security Policy/ },
    ], () => p.addScriptTag({ content: 'window.__airlockPwned = 1;' }).catch(() => null));
    check(await p.evaluate(() => window.__airlockPwned === undefined), 'an inline script ran despite the policy');
    // And a dialog is seen: the harness's evaluate is not subject to the page's
    // policy, so this one does open (and is dismissed).
    await run.expecting([{ kind: 'dialog', match: /detector/ }], () => p.evaluate(() => alert('detector')));
  });

  // The token of this session, as a hostile page could at best have guessed it.
  const token = await run.step('reads its own CSRF token', res, (p) =>
    p.locator('form[action="/logout"] input[name=csrf]').inputValue());

  for (const site of P.crossSite) {
    for (const [form, label] of [['create', 'create a datasource'], ['create-with-token', 'create one, with the real token'],
      ['logout', 'log out, with the real token']]) {
      await run.step(`${site.label}: a cross-site form to ${label} is refused`, res, async (p) => {
        await p.goto(site.url);
        await p.locator(`#${form} input[name=csrf]`).evaluateAll((els, v) => els.forEach((e) => { e.value = v; }), token);
        const post = (r) => r.request().method() === 'POST' && r.url().startsWith(run.url + '/');
        // Chromium may log the 403 of a navigation as a console error: expected here.
        const [resp] = await run.expecting([{ kind: 'console', match: /status of 403/, optional: true }], async () => {
          const r = await Promise.all([p.waitForResponse(post), p.click(`#${form} button`)]);
          await p.waitForLoadState('load');
          return r;
        });
        check(resp.status() === 403, `the airlock answered ${resp.status()}, not 403`);
        check(await p.locator('h1').innerText() === 'Not allowed', 'the answer is not the "Not allowed" page');
        run.data[`${site.label} ${form}`] = resp.status();
      });
    }
  }

  await run.step('nothing changed: still logged in, one datasource', res, async (p) => {
    const r = await p.goto(`/workspaces/${ws}`);
    check(r.status() === 200 && new URL(p.url()).pathname === `/workspaces/${ws}`, 'the session was ended');
    const rows = await p.locator('tbody tr').count();
    check(rows === 1, `the workspace lists ${rows} datasources, not 1`);
    await p.goto(`/workspaces/${ws}/datasources/${name}`);
    run.data.stage = await stageOf(p);
  });
});
