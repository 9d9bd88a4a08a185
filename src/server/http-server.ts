// HTTP endpoints for operators: /healthz (the process is alive), /readyz (routes loaded and not
// shutting down), /metrics (Prometheus).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export interface HttpDeps {
  readonly metrics: Registry;
  /** Why the service is not ready, or undefined when it is. */
  readonly notReadyReason: () => string | undefined;
}

export class HttpServer {
  readonly #server: Server;

  constructor(deps: HttpDeps) {
    this.#server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD' }).end();
      } else if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      } else if (path === '/readyz') {
        const reason = deps.notReadyReason();
        res
          .writeHead(reason === undefined ? 200 : 503, { 'content-type': 'text/plain' })
          .end(reason === undefined ? 'ready\n' : `not ready: ${reason}\n`);
      } else if (path === '/metrics') {
        deps.metrics.metrics().then(
          (text) => res.writeHead(200, { 'content-type': deps.metrics.contentType }).end(text),
          () => res.writeHead(500).end(),
        );
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      }
    });
  }

  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', (error) => reject(new Error(`cannot listen on ${host}:${port} (http): ${error.message}`)));
      this.#server.listen(port, host, () => resolve((this.#server.address() as AddressInfo).port));
    });
  }

  close(): Promise<void> {
    this.#server.closeAllConnections();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
