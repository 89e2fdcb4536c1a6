// The main pages on a phone-sized screen (390 x 844 CSS pixels, a mobile
// viewport that honours <meta name="viewport">), each screenshotted, none
// wider than the screen (tests/e2e/test_browser_flows.py::test_phone_sized_pages).
// Params: workspace, researcher, approver, passwords, uploading (a datasource
// at stage Uploading), waiting (one at AwaitingApproval with files).
import { scenario, check, login, horizontalOverflow, stageOf, manifestOf, PHONE } from './lib.mjs';

const phone = { viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 2 };

async function fits(page) {
  const o = await horizontalOverflow(page);
  check(o.viewport === PHONE.width, `the layout viewport is ${o.viewport} px wide, not ${PHONE.width} (meta viewport ignored?)`);
  check(o.documentWidth <= o.viewport && o.bodyWidth <= o.viewport,
    `the page is ${Math.max(o.documentWidth, o.bodyWidth)} px wide on a ${o.viewport} px screen; sticking out: ${o.offenders.join(', ')}`);
  return o;
}

await scenario(async (run) => {
  const P = run.params;
  const ws = P.workspace;
  const widths = {};
  const res = await run.person('researcher-phone', phone);
  const visit = async (who, label, path, more) => run.step(label, who, async (p) => {
    if (path) {
      const r = await p.goto(path);
      check(r.status() === 200, `${path} answered ${r.status()}`);
    }
    if (more) await more(p);
    widths[`${who.who} ${label}`] = await fits(p);
  });

  await visit(res, 'login page', '/login');
  await run.step('log in', res, (p) => login(p, P.researcher, P.passwords[P.researcher]));
  await visit(res, 'workspaces', '/');
  await visit(res, 'workspace', `/workspaces/${ws}`, async (p) => {
    check(await p.locator(`a[href="/workspaces/${ws}/datasources/${P.waiting}"]`).count() === 1, 'the datasource is not listed');
  });
  await visit(res, 'new datasource form', `/workspaces/${ws}/new`, async (p) => {
    // The form's controls fit the screen too (each one is in view sideways).
    for (const id of ['displayName', 'description', 'license', 'organisation', 'contactName', 'contactRole', 'project']) {
      const b = await p.locator(`#${id}`).boundingBox();
      check(b && b.x >= 0 && b.x + b.width <= PHONE.width, `#${id} does not fit the screen: ${JSON.stringify(b)}`);
    }
  });
  await visit(res, 'upload page', `/workspaces/${ws}/datasources/${P.uploading}/upload`, async (p) => {
    check(await p.locator('button:has-text("All files uploaded")').count() === 1, 'no "All files uploaded" button');
  });
  await visit(res, 'datasource details', `/workspaces/${ws}/datasources/${P.waiting}`, async (p) => {
    check(await stageOf(p) === 'AwaitingApproval', `stage ${await stageOf(p)}`);
  });

  const appr = await run.person('approver-phone', phone);
  await run.step('log in', appr, (p) => login(p, P.approver, P.passwords[P.approver]));
  await visit(appr, 'approval queue', '/approvals', async (p) => {
    check(await p.locator(`a[href="/approvals/${P.waiting}"]`).count() === 1, 'the datasource does not wait in the queue');
  });
  await visit(appr, 'review page', `/approvals/${P.waiting}`, async (p) => {
    const m = await manifestOf(p);
    run.data.manifest = m;
    // The Approve button is on the screen sideways (reachable by scrolling down only).
    const b = await p.locator('button:has-text("Approve")').boundingBox();
    check(b && b.x >= 0 && b.x + b.width <= PHONE.width, `the Approve button is off the screen: ${JSON.stringify(b)}`);
  });
  run.data.widths = widths;
});
