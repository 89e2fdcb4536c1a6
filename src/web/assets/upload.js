/* upload.js - the upload widget of the airlock's upload page
 * (docs/frontend.md, "The upload widget").
 *
 * Plain modern JavaScript, no build step, served by the airlock at
 * /static/upload.js after /static/tus.min.js (tus-js-client, from npm at
 * build time). The page's policy allows scripts and connections to 'self'
 * only, so nothing here is inline and nothing goes to another origin.
 *
 * Everything it needs comes from the widget's root element
 * (#upload-widget): data-endpoint (the tus collection URL), data-csrf (sent
 * back as X-CSRF-Token on every request, which the uploader requires of a
 * session on writes) and data-datasource. Pointing it at another uploader
 * changes only data-endpoint.
 *
 * The pure helpers at the top are exported under Node (module.exports) for
 * tests; in a browser the widget starts when the document is parsed.
 */
'use strict';

(function () {
  // ---- pure helpers (no DOM) -------------------------------------------------

  // A path of a dropped or chosen file, as the uploader's relativePath:
  // "folder/sub/file.csv", never with a leading "/". fullPath is a
  // FileSystemEntry's ("/folder/file.csv"), webkitRelativePath a folder
  // input's ("folder/file.csv"); a lone file has only its name.
  function filePath(name, webkitRelativePath, fullPath) {
    const p = fullPath || webkitRelativePath || name || '';
    return p.replace(/^\/+/, '');
  }

  // Hidden: any segment starting with "." (.DS_Store, .git/...). The
  // uploader refuses such names (the checks and the reviewer would not see
  // them), so they are left out with a note instead of failing.
  function isHiddenPath(path) {
    return path.split('/').some((seg) => seg.startsWith('.'));
  }

  // Splits [{path, ...}] into what is uploaded and the hidden paths left out.
  function partitionHidden(items) {
    const keep = [];
    const hidden = [];
    for (const it of items) (isHiddenPath(it.path) ? hidden : keep).push(it);
    return { keep, hidden };
  }

  // The tus Upload-Metadata of a file: its name, and relativePath when it is
  // in a folder (the uploader places it there).
  function tusMetadata(path, type) {
    const slash = path.lastIndexOf('/');
    const m = { filename: path.slice(slash + 1) };
    if (slash >= 0) m.relativePath = path;
    if (type) m.filetype = type;
    return m;
  }

  function formatBytes(n) {
    if (!Number.isFinite(n) || n < 0) return '?';
    const units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
    let i = 0;
    let v = n;
    while (v >= 1000 && i < units.length - 1) {
      v /= 1000;
      i++;
    }
    return i === 0 ? `${n} bytes` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
  }

  // A message for a person from an answer of the uploader: its JSON error
  // body ({"error": {"message"}}) says what to do; the status says what
  // kind of problem it is.
  function errorText(status, body) {
    let message = '';
    try {
      const j = JSON.parse(body || '');
      if (j && j.error && typeof j.error.message === 'string') message = j.error.message;
    } catch (e) {
      // not JSON: the status alone speaks
    }
    const kinds = {
      400: 'Refused',
      401: 'Your session has ended: log in again',
      403: 'Not allowed',
      404: 'Not found',
      409: 'Not possible',
      410: 'This upload expired: add the file again',
      412: 'The uploader speaks another tus version',
      413: 'Too big',
      415: 'Refused',
      423: 'Busy',
      460: 'Checksum mismatch',
      507: 'The server is out of disk space',
    };
    let kind = kinds[status];
    if (!status) kind = 'The connection failed';
    else if (!kind) kind = status >= 500 ? `Server error (${status})` : `Error ${status}`;
    return message ? `${kind}: ${message}` : kind;
  }

  // Whether tus-js-client should try again: lost connections, busy uploads
  // (423), server errors other than a full disk, and an offset that moved
  // (409 on PATCH/HEAD: it asks for the offset again). Not a refusal of the
  // file itself (400, 403, 404, 409 at creation, 413, 460 ...).
  function shouldRetry(status, method) {
    if (!status) return true;
    if (status === 423) return true;
    if (status === 409) return method === 'PATCH' || method === 'HEAD';
    return status >= 500 && status !== 507;
  }

  // The status line after files were added: how many, and the hidden paths
  // left out, the first three by name (a person should know what is missing).
  function addedNote(added, hiddenPaths) {
    let note = `${added} file${added === 1 ? '' : 's'} added.`;
    const n = hiddenPaths.length;
    if (n) {
      const some = hiddenPaths.slice(0, 3).join(', ');
      note += ` Left out ${n} hidden file${n === 1 ? '' : 's'} (names starting with a dot: ${some}${n > 3 ? ', ...' : ''}).`;
    }
    return note;
  }

  const helpers = {
    filePath, isHiddenPath, partitionHidden, addedNote, tusMetadata, formatBytes, errorText, shouldRetry,
  };
  if (typeof module !== 'undefined' && module.exports) {
    module.exports = helpers;
    return;
  }

  // ---- the widget --------------------------------------------------------------

  const MAX_PARALLEL = 3; // files uploading at once: enough to fill a link, gentle on a phone
  const CHUNK_BYTES = 64 * 1024 * 1024; // one PATCH: a retry resends at most this much
  const RETRY_DELAYS = [0, 1000, 3000, 5000, 10000, 20000, 30000];
  const IN_FLIGHT = new Set(['queued', 'uploading', 'paused']);

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function start(root) {
    const endpoint = root.dataset.endpoint;
    const headers = { 'X-CSRF-Token': root.dataset.csrf };
    const $ = (id) => document.getElementById(id);
    const ui = $('upload-ui');
    const status = $('upload-status');
    // Hidden files left out, kept on screen (the status line moves on).
    const skippedEl = $('upload-skipped');
    const skipped = new Set();
    const list = $('upload-list');
    const total = $('upload-total');
    const totalText = $('upload-total-text');
    const pauseAll = $('upload-pause-all');
    const resumeAll = $('upload-resume-all');
    const existingList = $('upload-existing');
    const existingEmpty = $('upload-existing-empty');
    const complete = $('upload-complete');
    const items = new Map(); // path -> item of this page
    let existing = new Map(); // path -> the uploader's record (GET endpoint)
    let closedReason = '';

    ui.hidden = false;

    function announce(text) {
      status.textContent = text;
    }

    // ---- what the uploader already has -------------------------------------------

    async function refreshExisting() {
      let r;
      try {
        r = await fetch(endpoint, { headers, credentials: 'same-origin', cache: 'no-store' });
      } catch (e) {
        announce('Cannot reach the airlock to list the uploaded files.');
        return;
      }
      const body = await r.text();
      if (!r.ok) {
        announce(errorText(r.status, body));
        return;
      }
      const j = JSON.parse(body);
      existing = new Map();
      for (const u of j.uploads || []) if (u.path) existing.set(u.path, u);
      closedReason = j.writable ? '' : j.closedReason || (j.complete ? 'All files were uploaded.' : '');
      renderExisting();
      refresh();
    }

    function renderExisting() {
      existingList.replaceChildren();
      const rows = [...existing.values()].sort((a, b) => (a.path < b.path ? -1 : 1));
      for (const u of rows) {
        const li = el('li', { class: 'upload-existing-item', 'data-testid': 'upload-existing-item', 'data-path': u.path });
        li.append(el('span', { class: 'upload-name' }, u.path), ' ');
        if (u.complete) {
          li.dataset.sha256 = u.sha256 || '';
          li.append(el('span', { class: 'muted' }, formatBytes(u.length)), ' ',
            el('code', { class: 'hash', 'data-testid': 'upload-existing-sha256' }, u.sha256 || ''));
        } else {
          const mine = items.get(u.path);
          li.append(el('span', { class: 'muted' },
            `unfinished: ${formatBytes(u.offset)} of ${formatBytes(u.length)}` +
            (mine ? '' : ' - add the same file again to finish it, or discard it')));
          if (!mine) {
            const discard = el('button', { type: 'button', class: 'secondary', 'data-testid': 'upload-discard' }, 'Discard');
            discard.addEventListener('click', () => discardExisting(u));
            li.append(' ', discard);
          }
        }
        existingList.append(li);
      }
      existingEmpty.hidden = rows.length > 0;
    }

    async function discardExisting(u) {
      try {
        const r = await fetch(u.url, {
          method: 'DELETE', credentials: 'same-origin', headers: { ...headers, 'Tus-Resumable': '1.0.0' },
        });
        if (!r.ok) announce(`${u.path}: ${errorText(r.status, await r.text())}`);
        else announce(`${u.path}: discarded`);
      } catch (e) {
        announce(`${u.path}: ${errorText(0, '')}`);
      }
      refreshExisting();
    }

    // ---- one file ------------------------------------------------------------------

    function setState(it, state, text) {
      it.state = state;
      it.row.dataset.state = state;
      it.statusEl.textContent = text;
      it.pauseBtn.hidden = !(state === 'uploading' || state === 'queued');
      it.resumeBtn.hidden = state !== 'paused';
      it.retryBtn.hidden = state !== 'error';
      it.removeBtn.hidden = !(state === 'error' || state === 'paused');
      refresh();
    }

    function showProgress(it) {
      const size = it.file.size;
      it.bar.max = size || 1;
      it.bar.value = size ? it.sent : (it.state === 'done' ? 1 : 0);
      it.bar.setAttribute('aria-valuetext', `${formatBytes(it.sent)} of ${formatBytes(size)}`);
    }

    function addRow(it) {
      const li = el('li', { class: 'upload-item', 'data-testid': 'upload-item', 'data-path': it.path });
      const name = el('span', { class: 'upload-name' }, it.path);
      const size = el('span', { class: 'muted' }, ` ${formatBytes(it.file.size)}`);
      it.bar = el('progress', { class: 'upload-progress', 'data-testid': 'upload-progress', max: '1', value: '0',
        'aria-label': `Progress of ${it.path}` });
      it.statusEl = el('span', { class: 'upload-item-status', 'data-testid': 'upload-item-status' });
      it.shaEl = el('code', { class: 'hash', 'data-testid': 'upload-sha256' });
      it.pauseBtn = el('button', { type: 'button', class: 'secondary', 'data-testid': 'upload-pause',
        'aria-label': `Pause ${it.path}` }, 'Pause');
      it.resumeBtn = el('button', { type: 'button', class: 'secondary', 'data-testid': 'upload-resume',
        'aria-label': `Resume ${it.path}` }, 'Resume');
      it.retryBtn = el('button', { type: 'button', class: 'secondary', 'data-testid': 'upload-retry',
        'aria-label': `Try ${it.path} again` }, 'Try again');
      it.removeBtn = el('button', { type: 'button', class: 'secondary', 'data-testid': 'upload-remove',
        'aria-label': `Remove ${it.path}` }, 'Remove');
      it.pauseBtn.addEventListener('click', () => pause(it));
      it.resumeBtn.addEventListener('click', () => resume(it));
      it.retryBtn.addEventListener('click', () => resume(it));
      it.removeBtn.addEventListener('click', () => remove(it));
      const buttons = el('span', { class: 'upload-buttons' });
      buttons.append(it.pauseBtn, it.resumeBtn, it.retryBtn, it.removeBtn);
      li.append(name, size, it.bar, it.statusEl, it.shaEl, buttons);
      it.row = li;
      list.append(li);
    }

    function makeUpload(it) {
      const prior = existing.get(it.path);
      const options = {
        endpoint,
        headers,
        chunkSize: CHUNK_BYTES,
        retryDelays: RETRY_DELAYS,
        metadata: tusMetadata(it.path, it.file.type),
        // An unfinished upload of this file that the uploader still has
        // (after a reload, or from another browser): carry on from it.
        uploadUrl: prior && !prior.complete && prior.length === it.file.size ? prior.url : undefined,
        // Resuming after a reload also works from localStorage: the
        // fingerprint tells files of the same name in other folders apart.
        fingerprint: (file) => Promise.resolve(['airlock', endpoint, it.path, file.size, file.lastModified].join('|')),
        storeFingerprintForResuming: true,
        removeFingerprintOnSuccess: true,
        onShouldRetry(err) {
          const res = err.originalResponse;
          const req = err.originalRequest;
          const retry = shouldRetry(res ? res.getStatus() : 0, req ? req.getMethod() : '');
          if (retry) it.statusEl.textContent = 'retrying...';
          return retry;
        },
        onProgress(sent) {
          it.sent = sent;
          if (it.state === 'uploading') it.statusEl.textContent = 'uploading';
          showProgress(it);
          refreshTotal();
        },
        onSuccess() {
          it.sent = it.file.size;
          showProgress(it);
          finished(it);
        },
        onError(err) {
          const res = err.originalResponse;
          const text = res ? errorText(res.getStatus(), res.getBody()) : errorText(0, '');
          setState(it, 'error', text);
          announce(`${it.path}: ${text}`);
          pump();
        },
      };
      return new tus.Upload(it.file, options);
    }

    async function finished(it) {
      // The uploader's record has the SHA-256 it computed of every byte.
      let sha = '';
      try {
        const r = await fetch(it.upload.url, { headers, credentials: 'same-origin', cache: 'no-store' });
        if (r.ok) sha = (await r.json()).sha256 || '';
      } catch (e) {
        // shown without the hash; the list below has it after the refresh
      }
      it.shaEl.textContent = sha;
      it.row.dataset.sha256 = sha;
      setState(it, 'done', 'done');
      announce(`${it.path}: uploaded`);
      pump();
      refreshExisting();
    }

    async function begin(it) {
      setState(it, 'uploading', 'starting');
      if (!it.upload) {
        it.upload = makeUpload(it);
        if (!it.upload.options.uploadUrl) {
          try {
            const previous = await it.upload.findPreviousUploads();
            if (previous.length) it.upload.resumeFromPreviousUpload(previous[0]);
          } catch (e) {
            // no storage (private mode): start afresh
          }
        }
      }
      if (it.state === 'uploading') it.upload.start();
    }

    function pump() {
      let active = 0;
      for (const it of items.values()) if (it.state === 'uploading') active++;
      for (const it of items.values()) {
        if (active >= MAX_PARALLEL) break;
        if (it.state === 'queued') {
          active++;
          begin(it);
        }
      }
      refresh();
    }

    function pause(it) {
      if (it.state === 'uploading' && it.upload) it.upload.abort();
      if (it.state === 'uploading' || it.state === 'queued') setState(it, 'paused', 'paused');
      pump();
    }

    function resume(it) {
      if (it.state === 'paused' || it.state === 'error') setState(it, 'queued', 'waiting');
      pump();
    }

    async function remove(it) {
      items.delete(it.path);
      it.row.remove();
      if (it.upload) {
        try {
          // abort(true) also terminates what the uploader holds of it.
          await it.upload.abort(true);
        } catch (e) {
          // nothing was created, or it is gone already
        }
      }
      announce(`${it.path}: removed`);
      refresh();
      refreshExisting();
    }

    // ---- adding files ------------------------------------------------------------

    function addFiles(found) {
      const { keep, hidden } = partitionHidden(found);
      let added = 0;
      for (const f of keep) {
        const had = items.get(f.path);
        if (had && had.state !== 'error') continue; // the same path twice: once is enough
        if (had) {
          items.delete(f.path);
          had.row.remove();
        }
        const it = { path: f.path, file: f.file, sent: 0, state: 'queued', upload: null };
        items.set(f.path, it);
        addRow(it);
        const prior = existing.get(f.path);
        if (prior && prior.complete && prior.length === it.file.size) {
          // Already there: a second creation would be refused (409).
          it.sent = it.file.size;
          it.shaEl.textContent = prior.sha256 || '';
          it.row.dataset.sha256 = prior.sha256 || '';
          setState(it, 'done', 'done (uploaded before)');
        } else {
          setState(it, 'queued', 'waiting');
        }
        showProgress(it);
        added++;
      }
      announce(addedNote(added, hidden.map((h) => h.path)));
      if (skippedEl && hidden.length) {
        for (const h of hidden) skipped.add(h.path);
        const names = [...skipped];
        skippedEl.textContent = `Left out (hidden files, names starting with a dot): ${names.slice(0, 10).join(', ')}` +
          (names.length > 10 ? ` and ${names.length - 10} more` : '') + '.';
        skippedEl.hidden = false;
      }
      renderExisting();
      pump();
    }

    function fromInput(input) {
      const found = [...input.files].map((file) => ({ file, path: filePath(file.name, file.webkitRelativePath, '') }));
      input.value = ''; // the same files may be chosen again
      addFiles(found);
    }

    // A dropped folder: every file under it, reading each directory until
    // readEntries answers nothing (it gives at most ~100 entries a call).
    async function walk(entry, out) {
      const path = filePath(entry.name, '', entry.fullPath);
      if (isHiddenPath(path)) {
        out.push({ path, file: null }); // reported, never read
        return;
      }
      if (entry.isFile) {
        const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
        out.push({ file, path });
      } else if (entry.isDirectory) {
        const reader = entry.createReader();
        for (;;) {
          const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
          if (!batch.length) break;
          for (const child of batch) await walk(child, out);
        }
      }
    }

    async function onDrop(ev) {
      ev.preventDefault();
      root.classList.remove('dragging');
      const dt = ev.dataTransfer;
      // Entries must be taken now: the DataTransfer is emptied when the
      // handler returns.
      const entries = [];
      if (dt.items && dt.items.length && typeof dt.items[0].webkitGetAsEntry === 'function') {
        for (let i = 0; i < dt.items.length; i++) {
          const item = dt.items[i];
          const entry = item.kind === 'file' ? item.webkitGetAsEntry() : null;
          if (entry) entries.push(entry);
        }
      }
      if (!entries.length) {
        addFiles([...dt.files].map((file) => ({ file, path: filePath(file.name, '', '') })));
        return;
      }
      announce('Reading the dropped files...');
      const found = [];
      try {
        for (const entry of entries) await walk(entry, found);
      } catch (e) {
        announce(`Cannot read a dropped folder: ${e && e.message ? e.message : e}`);
      }
      addFiles(found);
    }

    // ---- the whole -------------------------------------------------------------------

    function refreshTotal() {
      let size = 0;
      let sent = 0;
      let done = 0;
      for (const it of items.values()) {
        size += it.file.size;
        sent += it.state === 'done' ? it.file.size : it.sent;
        if (it.state === 'done') done++;
      }
      total.max = size || 1;
      total.value = size ? sent : (items.size && done === items.size ? 1 : 0);
      totalText.textContent = items.size
        ? `${done} of ${items.size} files, ${formatBytes(sent)} of ${formatBytes(size)}`
        : '';
    }

    function refresh() {
      refreshTotal();
      let flying = 0;
      let paused = 0;
      let running = 0;
      for (const it of items.values()) {
        if (IN_FLIGHT.has(it.state)) flying++;
        if (it.state === 'paused') paused++;
        if (it.state === 'uploading' || it.state === 'queued') running++;
      }
      let unfinished = 0;
      for (const u of existing.values()) if (!u.complete && !items.has(u.path)) unfinished++;
      pauseAll.disabled = running === 0;
      resumeAll.disabled = paused === 0;
      if (complete) {
        // "All files uploaded" only when nothing is on its way: the
        // uploader would refuse it (409) while an upload is unfinished.
        complete.disabled = flying > 0 || unfinished > 0 || !!closedReason;
        complete.title = flying ? 'Wait until every file is uploaded'
          : unfinished ? 'Finish or discard the unfinished uploads first' : '';
      }
      root.dataset.inFlight = String(flying);
    }

    $('upload-files').addEventListener('change', (ev) => fromInput(ev.target));
    $('upload-folder').addEventListener('change', (ev) => fromInput(ev.target));
    pauseAll.addEventListener('click', () => {
      for (const it of items.values()) if (it.state === 'uploading' || it.state === 'queued') pause(it);
    });
    resumeAll.addEventListener('click', () => {
      for (const it of items.values()) if (it.state === 'paused') setState(it, 'queued', 'waiting');
      pump();
    });
    root.addEventListener('dragover', (ev) => {
      ev.preventDefault();
      ev.dataTransfer.dropEffect = 'copy';
      root.classList.add('dragging');
    });
    root.addEventListener('dragleave', (ev) => {
      if (!root.contains(ev.relatedTarget)) root.classList.remove('dragging');
    });
    root.addEventListener('drop', onDrop);
    window.addEventListener('beforeunload', (ev) => {
      for (const it of items.values()) {
        if (it.state === 'uploading') {
          ev.preventDefault(); // ask first: leaving pauses the uploads (they resume when the files are added again)
          return;
        }
      }
    });
    refresh();
    refreshExisting();
  }

  function boot() {
    const root = document.getElementById('upload-widget');
    if (!root) return;
    if (typeof tus === 'undefined' || !tus.isSupported) {
      const s = document.getElementById('upload-status');
      if (s) s.textContent = 'This browser cannot upload from this page (tus-js-client did not load or is not supported).';
      const ui = document.getElementById('upload-ui');
      if (ui) ui.hidden = false;
      return;
    }
    start(root);
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
