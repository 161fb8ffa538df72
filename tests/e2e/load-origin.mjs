// The origin for the e2e load, in a process of its own so that it does not
// share the driver's event loop: answers every GET with "ok" and keeps
// connections alive. Usage: node load-origin.mjs PORT
import http from "node:http";

const server = http.createServer((req, res) => {
  res.writeHead(200, { "content-type": "text/plain", "content-length": "3" });
  res.end("ok\n");
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.argv[2]), "127.0.0.1");
