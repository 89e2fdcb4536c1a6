// Manual ingress end to end with the real Keycloak and the upload widget
// (tests/e2e/test_browser_keycloak_upload.py): the researcher logs in on
// Keycloak's own page, creates an Uploaded datasource, uploads files and a
// folder through the widget, pauses and resumes one file, and keeps
// uploading a large one while Python kills `airlock serve` (SIGKILL) and
// starts it again: the widget's automatic retry resumes it from the
// uploader's durable offset, without a reload. Then "All files uploaded",
// two approvers approve, and the researcher sees it Published.
// Params: workspace, workspaceTitle, researcher, approvers [{user, type}],
// passwords {user: password}, files [local paths], folder (a local
// directory), pauseFile, pauseRate, bigFile, bigRate (bytes/s),
// sha256 {path in the datasource: hex}, sizes {path: bytes}.
import { basename } from 'node:path';
import {
  scenario, check, loginWithKeycloak, createUploadedDatasource, waitForUploadForm, allFilesUploaded,
  stageOf, waitForStage, openReview, checkManifest, approveAndSeeDecision, throttleUploads, widgetRow, widgetRows,
  waitForWidgetDone, waitForProgress, watchTus, recordStatus, statusLog,
} from './lib.mjs';

// Chromium's console lines while the airlock is down (the widget's requests
// fail, then are retried): expected in the kill and restart steps only.
const AIRLOCK_DOWN = [
  { kind: 'console', match: /net::ERR_(CONNECTION_REFUSED|CONNECTION_RESET|EMPTY_RESPONSE|CONNECTION_CLOSED|CONNECTION_ABORTED)/, optional: true },
];

await scenario(async (run) => {
  const P = run.params;
  const ws = P.workspace;
  const res = await run.person('researcher');
  const sha = (paths) => Object.fromEntries(paths.map((p) => [p, P.sha256[p]]));
  const shown = (rows, paths) => Object.fromEntries(paths.map((p) => [p, (rows.find((r) => r.path === p) || {}).sha256]));

  await run.step('logs in on Keycloak\'s own login page', res, (p) =>
    loginWithKeycloak(p, P.researcher, P.passwords[P.researcher], run.url));

  await run.step('opens the workspace', res, async (p) => {
    const link = p.locator(`a[href="/workspaces/${ws}"]`);
    check(await link.count() === 1, `no link to workspace ${ws} on the workspaces page`);
    await Promise.all([p.waitForURL((u) => u.pathname === `/workspaces/${ws}`), link.click()]);
    check(await p.locator('h1').innerText() === P.workspaceTitle, 'the workspace page has another title');
  });

  const name = await run.step('creates an Uploaded datasource through the form', res, (p) =>
    createUploadedDatasource(p, ws, { displayName: 'Clinic imaging export 2024' }));
  run.data.datasource = name;

  let tus = null;
  await run.step('reaches the upload widget at stage Uploading', res, async (p) => {
    await waitForUploadForm(p);
    check(await stageOf(p) === 'Uploading', `stage ${await stageOf(p)} on the upload page, not Uploading`);
    await p.locator('#upload-ui').waitFor({ state: 'visible' });
    // Set once the page is the widget's: still there at the end = no reload.
    await p.evaluate(() => { window.__airlockSamePage = true; });
    tus = watchTus(p, `/api/v1/datasources/${name}/uploads`);
    await run.ask('uploading', { datasource: name });
  });

  const files = P.files.map((f) => basename(f));
  await run.step('chooses several files with the file chooser', res, async (p) => {
    await p.setInputFiles('[data-testid="upload-files"]', P.files);
    const rows = await waitForWidgetDone(p, files);
    check(JSON.stringify(shown(rows, files)) === JSON.stringify(sha(files)),
      `the widget shows ${JSON.stringify(shown(rows, files))}, Python computed ${JSON.stringify(sha(files))}`);
  });

  const folderFiles = Object.keys(P.sha256).filter((x) => x.startsWith(`${basename(P.folder)}/`)).sort();
  await run.step('chooses a folder: its subfolder goes along, .DS_Store stays out', res, async (p) => {
    await recordStatus(p);
    await p.setInputFiles('[data-testid="upload-folder"]', P.folder);
    const note = (await statusLog(p)).find((t) => /Left out/.test(t));
    run.data.folderNote = note;
    check(note === `2 files added. Left out 1 hidden file (names starting with a dot: ${basename(P.folder)}/.DS_Store).`,
      `the status line did not say which hidden file was left out: ${JSON.stringify(await statusLog(p))}`);
    const rows = await waitForWidgetDone(p, folderFiles);
    check(!rows.some((r) => r.path.includes('.DS_Store')), 'the widget lists .DS_Store');
    const kept = await p.getByTestId('upload-skipped').innerText();
    check(kept.includes(`${basename(P.folder)}/.DS_Store`), `the widget does not keep the left-out file on screen: ${JSON.stringify(kept)}`);
    check(JSON.stringify(shown(rows, folderFiles)) === JSON.stringify(sha(folderFiles)),
      `the widget shows ${JSON.stringify(shown(rows, folderFiles))}, Python computed ${JSON.stringify(sha(folderFiles))}`);
  });

  // Pause and resume one file, slowed down so the pause lands mid-file.
  const pausePath = basename(P.pauseFile);
  const paused = {};
  await run.step('pauses a file mid-way: nothing more is sent', res, async (p) => {
    await throttleUploads(p, P.pauseRate);
    await p.setInputFiles('[data-testid="upload-files"]', [P.pauseFile]);
    paused.fractionAtPause = await waitForProgress(p, pausePath, 0.15);
    const row = widgetRow(p, pausePath);
    await row.locator('[data-testid="upload-pause"]').click();
    await p.waitForFunction((path) => [...document.querySelectorAll('[data-testid="upload-item"]')]
      .some((r) => r.dataset.path === path && r.dataset.state === 'paused'), pausePath);
    check(await row.locator('[data-testid="upload-resume"]').isVisible(), 'no Resume button on the paused file');
    // What the uploader keeps of it, once its last request is recorded.
    paused.serverOffset = (await run.ask('offset', { datasource: name, path: pausePath })).offset;
    const before = (await widgetRows(p)).find((r) => r.path === pausePath).value;
    const requests = tus.requests.length;
    // Nothing is sent while paused: watched for a while on both sides.
    await p.waitForTimeout(2000);
    paused.serverOffsetLater = (await run.ask('offset', { datasource: name, path: pausePath })).offset;
    const after = (await widgetRows(p)).find((r) => r.path === pausePath);
    check(paused.serverOffsetLater === paused.serverOffset,
      `the uploader's offset moved from ${paused.serverOffset} to ${paused.serverOffsetLater} while paused`);
    check(after.value === before && after.state === 'paused', `the widget's progress moved while paused (${before} -> ${after.value})`);
    const sent = tus.requests.slice(requests).filter((r) => r.method === 'PATCH');
    check(!sent.length, `${sent.length} PATCH request(s) while paused`);
    check(paused.serverOffset > 0 && paused.serverOffset < P.sizes[pausePath],
      `the uploader kept ${paused.serverOffset} bytes of ${pausePath} at the pause`);
    tus.mark = 'resumed';
  });

  await run.step('resumes it: it carries on from the uploader\'s offset and completes', res, async (p) => {
    await widgetRow(p, pausePath).locator('[data-testid="upload-resume"]').click();
    const rows = await waitForWidgetDone(p, [pausePath]);
    const row = rows.find((r) => r.path === pausePath);
    check(row.sha256 === P.sha256[pausePath], `${pausePath}: the widget shows ${row.sha256}, Python computed ${P.sha256[pausePath]}`);
    const patch = tus.requests.find((r) => r.mark === 'resumed' && r.method === 'PATCH');
    check(patch, 'no PATCH after Resume');
    paused.resumedAt = patch.offset;
    check(patch.offset === paused.serverOffset,
      `the first PATCH after Resume started at ${patch.offset}, the uploader had ${paused.serverOffset}`);
  });
  run.data.paused = paused;

  // The large file: kill -9 of the airlock while it is part-way.
  const bigPath = basename(P.bigFile);
  const big = { length: P.sizes[bigPath] };
  await run.step('uploads a large file until it is part-way', res, async (p) => {
    await throttleUploads(p, P.bigRate);
    tus.mark = 'before-kill';
    await p.setInputFiles('[data-testid="upload-files"]', [P.bigFile]);
    big.fractionAtKill = await waitForProgress(p, bigPath, 0.3, 180_000);
    check(big.fractionAtKill <= 0.8, `the large file was at ${Math.round(big.fractionAtKill * 100)}% already: too fast to land mid-file`);
    // "All files uploaded" waits for it, and looks like it does.
    const button = p.locator('[data-testid="upload-complete"]');
    check(await button.isDisabled(), '"All files uploaded" is enabled while a file is uploading');
    big.disabledLook = await button.evaluate((b) => getComputedStyle(b).backgroundColor);
  });

  // One step from the kill to the end of the file, so the console lines of
  // the refused retries while the airlock is down fall inside expecting().
  await run.step('airlock serve killed (SIGKILL) and restarted: the widget resumes by itself', res, async (p) => {
    await run.expecting(AIRLOCK_DOWN, async () => {
      tus.mark = 'killed';
      const k = await run.ask('kill9', { datasource: name, path: bigPath });
      big.offsetAtKill = k.offset;
      check(!k.complete && k.offset > 0 && k.offset < big.length,
        `the uploader holds ${k.offset} of ${big.length} bytes at the kill`);
      // The widget noticed and is retrying by itself.
      await p.waitForFunction((path) => [...document.querySelectorAll('[data-testid="upload-item"]')]
        .some((r) => r.dataset.path === path && r.dataset.state === 'uploading' &&
          r.querySelector('[data-testid="upload-item-status"]').textContent === 'retrying...'), bigPath);
      big.retryingScreenshot = await run.screenshot(p,
        `${String(run.steps.length).padStart(2, '0')}-researcher-airlock-down-the-widget-is-retrying`);
      tus.mark = 'restarted';
      await run.ask('restart', { datasource: name });
      const rows = await waitForWidgetDone(p, [bigPath], 300_000);
      big.sha256 = rows.find((r) => r.path === bigPath).sha256;
    }, 0);
  });

  await run.step('the large file resumed from the durable offset, without a reload', res, async (p) => {
    check(big.sha256 === P.sha256[bigPath], `${bigPath}: the uploader's SHA-256 ${big.sha256}, Python computed ${P.sha256[bigPath]}`);
    const after = tus.requests.filter((r) => r.mark === 'restarted');
    const head = after.find((r) => r.method === 'HEAD' && r.status === 200);
    check(head, `no answered HEAD after the restart: ${JSON.stringify(after)}`);
    check(head.answerOffset === big.offsetAtKill, `HEAD after the restart answered ${head.answerOffset}, the uploader held ${big.offsetAtKill}`);
    const patches = after.filter((r) => r.method === 'PATCH' && r.url === head.url);
    check(patches.length, 'no PATCH after the restart');
    big.resumedAt = patches[0].offset;
    big.resentBytes = big.length - big.resumedAt;
    check(big.resumedAt === big.offsetAtKill, `the first PATCH after the restart started at ${big.resumedAt}, not ${big.offsetAtKill}`);
    big.reloaded = !(await p.evaluate(() => window.__airlockSamePage === true));
    check(!big.reloaded, 'the upload page was reloaded');
    await throttleUploads(p, null);
  });
  run.data.big = big;

  await run.step('clicks "All files uploaded"', res, async (p) => {
    const all = Object.keys(P.sha256).sort();
    const rows = await widgetRows(p);
    check(JSON.stringify(rows.map((r) => r.path).sort()) === JSON.stringify(all), `the widget lists ${rows.map((r) => r.path)}`);
    check(rows.every((r) => r.state === 'done'), 'a file is not done');
    await p.locator('[data-testid="upload-complete"]:enabled').waitFor();
    const look = await p.locator('[data-testid="upload-complete"]').evaluate((b) => getComputedStyle(b).backgroundColor);
    check(look !== big.disabledLook, `"All files uploaded" looks the same disabled and enabled (${look})`);
    await allFilesUploaded(p, ws, name);
    const stage = await stageOf(p);
    check(['Checking', 'AwaitingApproval'].includes(stage), `stage ${stage} after "All files uploaded"`);
  });

  const seen = [];
  for (const [i, a] of P.approvers.entries()) {
    const who = await run.person(`approver${i + 1}`);
    await run.step(`${a.user} logs in on Keycloak's page`, who, (p) => loginWithKeycloak(p, a.user, P.passwords[a.user], run.url));
    await run.step('opens the approval queue and the review page', who, async (p) => {
      await Promise.all([p.waitForURL((u) => u.pathname === '/approvals'), p.click('main a[href="/approvals"]')]);
      await openReview(p, name, 120_000);
      check((await p.locator('h1').innerText()).includes('Clinic imaging export 2024'), 'the review page has another title');
    });
    await run.step('sees the manifest: every file with its SHA-256, no hidden file', who, async (p) => {
      seen.push(await checkManifest(p, P.sha256, 'Python computed'));
    });
    await run.step(`approves as ${a.type}`, who, async (p) => {
      await approveAndSeeDecision(p, name, a.user, a.type);
    });
  }
  run.data.manifests = seen;

  await run.step('sees the datasource approved and Published', res, async (p) => {
    await p.goto(`/workspaces/${ws}/datasources/${name}`);
    run.data.finalStage = await waitForStage(p, 'Published', 120_000);
    await p.goto(`/workspaces/${ws}`);
    const tr = p.locator('tr', { has: p.locator(`a[href="/workspaces/${ws}/datasources/${name}"]`) });
    check(await tr.count() === 1, 'the workspace page does not list the datasource');
    check((await tr.innerText()).includes('Published'), 'the workspace page does not show it Published');
  });
});
