// The load generator the chaos runs and the benchmark rely on (vegeta, through test/bench/http-load.ts)
// must see every failure they claim there is none of: a refused connection, a reset, a connection
// closed without an answer, a request that times out. Each is made here on loopback by a server that
// does exactly that; every request sent must be accounted for as answered or failed.
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { describeLoad, httpLoad, type LoadResult } from '../bench/http-load.ts';
import { freePort } from '../support/ports.ts';

const servers: (Server | HttpServer)[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    (server as HttpServer).closeAllConnections?.();
    await new Promise((resolve) => server.close(resolve));
  }
});

async function listen<T extends Server | HttpServer>(server: T): Promise<string> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
}

/** A TCP server that reads a request and then does `act` to the connection instead of answering. */
function rawServer(act: (socket: Socket) => void): Server {
  return createServer((socket) => socket.once('data', () => act(socket)));
}

const RATE = 50;
const SECONDS = 1;
const load = (url: string, timeoutMs?: number) =>
  httpLoad(url, { 'e2b-sandbox-id': 'x' }, { seconds: SECONDS, rate: RATE, ...(timeoutMs ? { timeoutMs } : {}) });

/** Every request the rate asked for was sent (httpLoad itself checks each has exactly one result). */
function accounted(result: LoadResult): void {
  // vegeta paces requests to the rate; a run may end one short of rate x seconds.
  expect(result.sent, describeLoad(result)).toBeGreaterThanOrEqual(RATE * SECONDS - 1);
}

describe('the HTTP load generator counts every request', () => {
  it('a refused connection', async () => {
    const result = await load(`http://127.0.0.1:${await freePort()}/`);
    accounted(result);
    expect(result.outcomes).toEqual({ refused: result.sent });
    expect(result.failed).toBe(result.sent);
  });

  it('a connection reset after the request was sent', async () => {
    const result = await load(await listen(rawServer((socket) => socket.resetAndDestroy())));
    accounted(result);
    expect(result.outcomes).toEqual({ reset: result.sent });
  });

  it('a connection closed without an answer', async () => {
    const result = await load(await listen(rawServer((socket) => socket.end())));
    accounted(result);
    expect(result.outcomes).toEqual({ closed: result.sent });
  });

  it('a request that is never answered', async () => {
    const result = await load(await listen(rawServer(() => undefined)), 300);
    accounted(result);
    expect(result.outcomes).toEqual({ timeout: result.sent });
  });

  it('answers and resets mixed: every 200 the server sent, and every failure', async () => {
    let answeredByServer = 0;
    let okByServer = 0;
    let n = 0;
    const server = createHttpServer((req, res) => {
      n += 1;
      if (n % 3 === 0) {
        req.socket.resetAndDestroy();
        return;
      }
      answeredByServer += 1;
      if (n % 3 === 1) okByServer += 1;
      res.writeHead(n % 3 === 1 ? 200 : 503).end();
    });
    const result = await load(await listen(server));
    accounted(result);
    expect(result.answered).toBe(answeredByServer);
    expect((result.outcomes['200'] ?? 0) + (result.outcomes['503'] ?? 0)).toBe(answeredByServer);
    // Go retries an idempotent request once when a reused connection is reset before any answer, so
    // a reset request may come back as an answer or as a transport error: either way it is counted.
    expect(result.ok).toBe(okByServer);
    expect(result.failed).toBeGreaterThanOrEqual(result.outcomes['503'] ?? 0);
    expect(result.outcomes['503']).toBeGreaterThan(0);
  });
});
