// A TCP proxy on loopback in front of a real server (the API server), to inject network faults a real
// network has: connections that hang before anything flows (hold), connections that go silent while
// both ends believe them open (a half-open connection: blackhole), refused connections (refuse), and
// requests stuck on their way while replies still flow (stallRequests).
// It records every connection attempt, so a test can see reconnects and their spacing. Bytes pass
// untouched (TLS included), so the client still talks to the real server.
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

interface Pair {
  readonly client: Socket;
  upstream: Socket | undefined;
  silent: boolean;
  /** While requests are stalled: sends what was held from the client, and pipes it again. */
  unstall?: () => void;
}

export class FaultProxy {
  readonly #server: Server;
  readonly #targetPort: number;
  readonly #pairs = new Set<Pair>();
  #mode: 'pass' | 'hold' | 'refuse' = 'pass';
  #stalled = false;
  /** Bytes from clients held back by stallRequests(), since the proxy started. */
  stalledBytes = 0;
  readonly #stallWaiters = new Set<() => void>();
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

  /**
   * Requests stop on their way: what clients send (on open connections and new ones) is held, in
   * order, while what the server sends keeps flowing, so a watch already open keeps delivering events.
   * A one-way stall, as behind a congested link. release() sends what was held and resumes.
   */
  stallRequests(): void {
    this.#stalled = true;
    for (const pair of this.#pairs) this.#stall(pair);
  }

  /** Resolves once stallRequests() has held back some bytes from a client (a request on its way). */
  untilStalled(timeoutMs: number): Promise<void> {
    if (this.stalledBytes > 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        clearTimeout(timer);
        this.#stallWaiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#stallWaiters.delete(check);
        reject(new Error(`no request held by the stall within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#stallWaiters.add(check);
    });
  }

  /** Back to forwarding; held connections go through now, and stalled requests go on. */
  release(): void {
    this.#mode = 'pass';
    this.#stalled = false;
    for (const pair of this.#pairs) {
      const unstall = pair.unstall;
      pair.unstall = undefined;
      unstall?.();
    }
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
    if (this.#stalled) this.#stall(pair);
  }

  #stall(pair: Pair): void {
    const upstream = pair.upstream;
    if (upstream === undefined || pair.silent || pair.unstall !== undefined) return;
    pair.client.unpipe(upstream);
    const held: Buffer[] = [];
    const take = (chunk: Buffer) => {
      held.push(chunk);
      this.stalledBytes += chunk.length;
      for (const wake of this.#stallWaiters) wake();
    };
    // unpipe() left the client paused; a 'data' listener alone does not resume a paused stream.
    pair.client.on('data', take);
    pair.client.resume();
    // Synchronous from here to the pipe: no client data can arrive in between and be lost.
    pair.unstall = () => {
      pair.client.off('data', take);
      for (const chunk of held) upstream.write(chunk);
      pair.client.pipe(upstream);
    };
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
