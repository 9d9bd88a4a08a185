// The sandboxes' side of the router comparison (test/bench/router.ts), as its own process so that its
// work never shares the bench's event loop with the load generator's results: plain HTTP/1.1 servers
// on one port of every given address (the pod IPs kwok hands out), each answering every request 200
// with the same small body. A request carrying `x-bench-probe: <label>` is timed: the first arrival of
// each label is printed as a JSON line with its wall-clock time in ms (performance.timeOrigin +
// performance.now(), comparable with the bench's own clock to the microsecond), for "Ready -> first
// routable request". Usage: node upstream-server.ts <port> <address>...
import { createServer, type Server } from 'node:http';
import { performance } from 'node:perf_hooks';

const [portArg, ...addresses] = process.argv.slice(2);
const port = Number(portArg);
const body = Buffer.from('{"ok":true}');
const firsts = new Set<string>();

const handle: Parameters<typeof createServer>[1] = (req, res) => {
  const probe = req.headers['x-bench-probe'];
  if (typeof probe === 'string' && !firsts.has(probe)) {
    firsts.add(probe);
    const at = performance.timeOrigin + performance.now();
    console.log(JSON.stringify({ msg: 'first arrival', probe, at, address: req.socket.localAddress }));
  }
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
};

const servers: Server[] = [];
await Promise.all(
  addresses.map(
    (address) =>
      new Promise<void>((resolve, reject) => {
        const server = createServer(handle);
        // The proxies keep their upstream connections idle between rounds (Envoy for an hour, the
        // router for 90 s): a server that closed them after Node's default 5 s would race their next
        // request and fail it. Neither side's pool is what is measured.
        server.keepAliveTimeout = 600_000;
        server.once('error', reject);
        server.listen(port, address, () => resolve());
        servers.push(server);
      }),
  ),
);
console.log(JSON.stringify({ msg: 'upstream listening', port, addresses: addresses.length }));
process.on('SIGTERM', () => {
  for (const server of servers) server.closeAllConnections();
  process.exit(0);
});
