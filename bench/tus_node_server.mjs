// The @tus/server peer of bench/upload.sh: the reference Node.js tus server
// with its FileStore, as its README sets it up, and nothing else.
//
//   node tus_node_server.mjs <directory> <port>
//
// Run with NODE_PATH-independent resolution: bench/upload.sh starts it from
// the directory where @tus/server and @tus/file-store are installed.
import http from 'node:http';
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';

const [dir, port] = process.argv.slice(2);
if (!dir || !port) {
  console.error('usage: node tus_node_server.mjs <directory> <port>');
  process.exit(2);
}
const tus = new Server({ path: '/files', datastore: new FileStore({ directory: dir }) });
const server = http.createServer((req, res) => tus.handle(req, res));
server.listen(Number(port), '127.0.0.1', () => console.log(`tus node server listening on ${port}`));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => server.close(() => process.exit(0)));
