// A TCP proxy on loopback in front of a real server (the API server), to inject network faults a real
// network has: connections that hang before anything flows (hold), connections that go silent while
// both ends believe them open (a half-open connection: blackhole), and refused connections (refuse).
// It records every connection attempt, so a test can see reconnects and their spacing. Bytes pass
// untouched (TLS included), so the client still talks to the real server.
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

interface Pair {
  readonly client: Socket;
  upstream: Socket | undefined;
  silent: boolean;
}

export class FaultProxy {
  readonly #server: Server;
  readonly #targetPort: number;
  readonly #pairs = new Set<Pair>();
  #mode: 'pass' | 'hold' | 'refuse' = 'pass';
  readonly #held: Pair[] = [];
  /** When each connection attempt arrived (performance-independent wall clock, ms). */
  readonly attempts: number[] = [];
  readonly #attemptWaiters = new Set<() => void>();
  port = 0;

  private constructor(targetPort: number) {
    this.#targetPort = targetPort;
    this.#server = createServer((client) => this.#accept(client));
  }

  static async start(targetPort: number): Promise<FaultProxy> {
    const proxy = new FaultProxy(targetPort);
    await new Promise<void>((resolve) => proxy.#server.listen(0, '127.0.0.1', resolve));
    proxy.port = (proxy.#server.address() as AddressInfo).port;
    return proxy;
  }

  /** New connections wait, unforwarded, until release(). */
  hold(): void {
    this.#mode = 'hold';
  }

  /** New connections are reset at once, as by a server that is gone. */
  refuse(): void {
    this.#mode = 'refuse';
  }

  /** Back to forwarding; held connections go through now. */
  release(): void {
    this.#mode = 'pass';
    for (const pair of this.#held.splice(0)) this.#forward(pair);
  }

  /** Every open connection goes silent both ways, and stays open: a half-open connection. */
  blackholeOpen(): number {
    let n = 0;
    for (const pair of this.#pairs) {
      if (pair.silent) continue;
      pair.silent = true;
      pair.client.unpipe();
      pair.upstream?.unpipe();
      pair.client.removeAllListeners('data');
      pair.upstream?.removeAllListeners('data');
      pair.client.on('data', () => undefined);
      pair.upstream?.on('data', () => undefined);
      n += 1;
    }
    return n;
  }

  /** Every open connection is cut (both ends reset), as when the server goes away. */
  dropOpen(): void {
    for (const pair of this.#pairs) {
      pair.client.resetAndDestroy();
      pair.upstream?.destroy();
    }
  }

  /** Resolves when `count` attempts (counted from the proxy's start) have arrived. */
  untilAttempts(count: number, timeoutMs: number): Promise<void> {
    if (this.attempts.length >= count) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.attempts.length < count) return;
        clearTimeout(timer);
        this.#attemptWaiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#attemptWaiters.delete(check);
        reject(new Error(`${this.attempts.length} of ${count} connection attempts within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#attemptWaiters.add(check);
    });
  }

  async close(): Promise<void> {
    for (const pair of this.#pairs) {
      pair.client.destroy();
      pair.upstream?.destroy();
    }
    await new Promise((resolve) => this.#server.close(resolve));
  }

  #accept(client: Socket): void {
    this.attempts.push(Date.now());
    for (const wake of this.#attemptWaiters) wake();
    client.on('error', () => undefined);
    if (this.#mode === 'refuse') {
      client.resetAndDestroy();
      return;
    }
    const pair: Pair = { client, upstream: undefined, silent: false };
    this.#pairs.add(pair);
    client.once('close', () => {
      this.#pairs.delete(pair);
      if (!pair.silent) pair.upstream?.destroy();
    });
    if (this.#mode === 'hold') {
      client.pause();
      this.#held.push(pair);
    } else {
      this.#forward(pair);
    }
  }

  #forward(pair: Pair): void {
    if (pair.client.destroyed) return;
    const upstream = connect(this.#targetPort, '127.0.0.1');
    pair.upstream = upstream;
    upstream.on('error', () => pair.client.destroy());
    upstream.once('close', () => {
      if (!pair.silent) pair.client.destroy();
    });
    pair.client.pipe(upstream);
    upstream.pipe(pair.client);
    pair.client.resume();
  }
}

/** A copy of a kubeconfig (as ControlPlane writes them) whose API server address goes through the proxy. */
export function kubeconfigThrough(path: string, proxy: FaultProxy): string {
  const config = JSON.parse(readFileSync(path, 'utf8')) as { clusters: { cluster: { server: string } }[] };
  for (const c of config.clusters) c.cluster.server = `https://127.0.0.1:${proxy.port}`;
  const copy = path.replace(/\.kubeconfig$/, `-via-${proxy.port}.kubeconfig`);
  writeFileSync(copy, JSON.stringify(config));
  return copy;
}
