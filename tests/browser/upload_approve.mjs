// A researcher brings files in and two approvers let them through, all in the
// browser (tests/e2e/test_browser_flows.py::test_upload_then_two_approvals).
// The files themselves travel by the tus API from Python (the upload widget
// plugs in here later: docs/testing-browser.md).
// Params: workspace, workspaceTitle, researcher, approvers [{user, type}],
// passwords {user: password}.
import {
  scenario, check, login, createUploadedDatasource, waitForUploadForm, allFilesUploaded,
  stageOf, waitForStage, openReview, checkManifest, approveAndSeeDecision,
} from './lib.mjs';

await scenario(async (run) => {
  const P = run.params;
  const ws = P.workspace;
  const res = await run.person('researcher');

  await run.step('log in through the form', res, (p) => login(p, P.researcher, P.passwords[P.researcher]));

  await run.step('sees their workspace', res, async (p) => {
    const link = p.locator(`a[href="/workspaces/${ws}"]`);
    check(await link.count() === 1, `no link to workspace ${ws} on the workspaces page`);
    check((await link.innerText()).includes(P.workspaceTitle), `the link does not show "${P.workspaceTitle}"`);
    await Promise.all([p.waitForURL((u) => u.pathname === `/workspaces/${ws}`), link.click()]);
    check(await p.locator('h1').innerText() === P.workspaceTitle, 'the workspace page has another title');
  });

  const name = await run.step('creates an Uploaded datasource through the form', res, (p) =>
    createUploadedDatasource(p, ws, { displayName: 'Clinic questionnaires 2024' }));
  run.data.datasource = name;

  await run.step('reaches its upload page', res, async (p) => {
    await waitForUploadForm(p);
    check((await p.locator('h1').innerText()).includes('Clinic questionnaires 2024'), 'the upload page has another title');
    check(await stageOf(p) === 'Uploading', `stage ${await stageOf(p)} on the upload page, not Uploading`);
  });

  // Python puts the files in with the tus API and the researcher's token.
  const uploaded = await run.step('files uploaded with tus (Python)', null, () => run.ask('upload', { datasource: name }));
  run.data.uploaded = uploaded.files;

  await run.step('clicks "All files uploaded"', res, async (p) => {
    await allFilesUploaded(p, ws, name);
    const stage = await stageOf(p);
    check(['Checking', 'AwaitingApproval'].includes(stage), `stage ${stage} after "All files uploaded"`);
  });

  const seen = [];
  for (const [i, a] of P.approvers.entries()) {
    const who = await run.person(`approver${i + 1}`);
    await run.step(`${a.user} logs in`, who, (p) => login(p, a.user, P.passwords[a.user]));
    await run.step('opens the approval queue', who, async (p) => {
      await Promise.all([p.waitForURL((u) => u.pathname === '/approvals'), p.click('main a[href="/approvals"]')]);
      await openReview(p, name);
    });
    await run.step('sees the manifest with the sha256 of each file', who, async (p) => {
      seen.push(await checkManifest(p, uploaded.files, 'Python uploaded'));
    });
    await run.step(`approves as ${a.type}`, who, async (p) => {
      await approveAndSeeDecision(p, name, a.user, a.type);
    });
  }
  run.data.manifests = seen;

  await run.step('sees the datasource published', res, async (p) => {
    await p.goto(`/workspaces/${ws}/datasources/${name}`);
    run.data.finalStage = await waitForStage(p, 'Published');
    const row = p.locator(`a[href="/workspaces/${ws}/datasources/${name}"]`);
    await p.goto(`/workspaces/${ws}`);
    check(await row.count() === 1, 'the workspace page does not list the datasource');
    const tr = p.locator('tr', { has: row });
    check((await tr.innerText()).includes('Published'), 'the workspace page does not show it Published');
  });
});
