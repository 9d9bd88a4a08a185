// A set of stand-in sandboxes on distinct loopback IPs sharing one port, so a request's destination
// is told apart only by the pod IP sandbox-extproc chose.
import { startUpstream, type Upstream } from './upstream.ts';

export class UpstreamPool {
  readonly port: number;
  readonly #byIP = new Map<string, Upstream>();

  private constructor(port: number) {
    this.port = port;
  }

  static async start(ips: readonly string[]): Promise<UpstreamPool> {
    const [first, ...rest] = ips;
    const head = await startUpstream(first as string, first as string);
    const pool = new UpstreamPool(head.port);
    pool.#byIP.set(first as string, head);
    for (const ip of rest) pool.#byIP.set(ip, await startUpstream(ip, ip, head.port));
    return pool;
  }

  upstream(ip: string): Upstream {
    const upstream = this.#byIP.get(ip);
    if (upstream === undefined) throw new Error(`no upstream on ${ip}`);
    return upstream;
  }

  /** Requests received across all upstreams. */
  total(): number {
    let n = 0;
    for (const u of this.#byIP.values()) n += u.received.length;
    return n;
  }

  async close(): Promise<void> {
    await Promise.all([...this.#byIP.values()].map((u) => u.close()));
  }
}
