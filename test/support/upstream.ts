// Stand-in sandboxes: local HTTP servers that answer with their own identity and the headers they
// received, and echo websocket messages. Each listens on a free loopback port.
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

export interface Upstream {
  readonly name: string;
  readonly host: string;
  readonly port: number;
  /** Requests received, newest last. */
  readonly received: { path: string; headers: IncomingHttpHeaders }[];
  /** When each path last arrived (performance.now()), for latency measurements. */
  readonly arrivals: Map<string, number>;
  close(): Promise<void>;
}

export async function startUpstream(name: string, host = '127.0.0.1', port = 0): Promise<Upstream> {
  const received: Upstream['received'] = [];
  const arrivals = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    arrivals.set(req.url ?? '', performance.now());
    received.push({ path: req.url ?? '', headers: req.headers });
    res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': name });
    res.end(JSON.stringify({ upstream: name, path: req.url, headers: req.headers }));
  });
  const wss = new WebSocketServer({ server });
  wss.on('connection', (socket, req) => {
    // A handshake is a request too: what it carried (Origin, say) is checked like any other's.
    received.push({ path: req.url ?? '', headers: req.headers });
    socket.on('message', (data) => socket.send(`${name}:${data.toString()}`));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    name,
    host,
    port: (server.address() as AddressInfo).port,
    received,
    arrivals,
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
