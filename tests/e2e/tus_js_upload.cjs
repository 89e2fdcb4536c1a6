// Drives the real tus-js-client (the library the browser widget uses) in
// Node, for tests/e2e/test_uploader_standalone.py.
//
//   node tus_js_upload.cjs <endpoint> <file> <relativePath> <mode> [uploadUrl]
//
// mode "full": upload the file. "abort": stop after the first chunk.
// "resume": carry on the upload at uploadUrl (HEAD, then PATCH from there).
// Environment: TUS_JS_CLIENT (the package directory), TUS_HEADERS (JSON),
// TUS_CHUNK (bytes per PATCH). Prints one JSON line {url, offset}.
const tus = require(process.env.TUS_JS_CLIENT);
const fs = require('fs');
const path = require('path');

const [endpoint, file, relativePath, mode, uploadUrl] = process.argv.slice(2);
const data = fs.readFileSync(file);
let upload;
upload = new tus.Upload(data, {
  endpoint,
  uploadUrl: mode === 'resume' ? uploadUrl : undefined,
  headers: JSON.parse(process.env.TUS_HEADERS || '{}'),
  chunkSize: Number(process.env.TUS_CHUNK || 1 << 20),
  retryDelays: [0, 200, 500],
  metadata: { filename: path.basename(relativePath), relativePath, filetype: 'text/csv' },
  onChunkComplete(chunk, accepted) {
    if (mode === 'abort') {
      upload.abort().then(() => {
        console.log(JSON.stringify({ url: upload.url, offset: accepted }));
        process.exit(0);
      });
    }
  },
  onError(err) {
    console.error(String(err));
    process.exit(1);
  },
  onSuccess() {
    console.log(JSON.stringify({ url: upload.url, offset: data.length }));
  },
});
upload.start();
