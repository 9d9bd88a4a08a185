// Steady client traffic for the container suites, counted at the transport level: every request ends
// as a status code or a socket error (reset, refused, hang-up), and nothing is retried. Keep-alive
// connections, as real clients hold them; each new connection goes where target() points at that
// moment, which lets a test move "the Service's endpoints" during a rollout as kube-proxy would.
import { Agent, request } from 'node:http';

export interface LoadResult {
  readonly sent: number;
  readonly ok: number;
  /** Every request that did not end in a 200: its status, or its socket error. */
  readonly failures: readonly string[];
}

export class EdgeLoad {
  readonly #target: () => string;
  readonly #headers: Record<string, string>;
  readonly #agents = new Map<string, Agent>();
  #running = false;
  #sent = 0;
  #ok = 0;
  readonly #failures: string[] = [];
  readonly #workers: Promise<void>[] = [];
  readonly #firstOk: Promise<void>;
  #onOk: () => void = () => undefined;

  /** target(): the base URL (http://ip:port) new connections go to. */
  constructor(target: () => string, headers: Record<string, string>) {
    this.#target = target;
    this.#headers = headers;
    this.#firstOk = new Promise((resolve) => (this.#onOk = resolve));
  }

  start(concurrency: number): this {
    this.#running = true;
    for (let i = 0; i < concurrency; i++) this.#workers.push(this.#worker());
    return this;
  }

  /** Resolves once at least one request has been answered 200. */
  flowing(): Promise<void> {
    return this.#firstOk;
  }

  get ok(): number {
    return this.#ok;
  }

  async stop(): Promise<LoadResult> {
    this.#running = false;
    await Promise.all(this.#workers);
    for (const agent of this.#agents.values()) agent.destroy();
    return { sent: this.#sent, ok: this.#ok, failures: this.#failures };
  }

  #agent(base: string): Agent {
    let agent = this.#agents.get(base);
    if (agent === undefined) {
      agent = new Agent({ keepAlive: true, maxSockets: 64 });
      this.#agents.set(base, agent);
    }
    return agent;
  }

  async #worker(): Promise<void> {
    while (this.#running) {
      const base = this.#target();
      this.#sent++;
      const outcome = await new Promise<string>((resolve) => {
        const req = request(`${base}/`, { agent: this.#agent(base), headers: this.#headers, timeout: 30_000 }, (res) => {
          res.resume();
          res.on('end', () => resolve(String(res.statusCode)));
          res.on('error', (e) => resolve(`response error ${e.message}`));
        });
        req.on('timeout', () => req.destroy(new Error('timed out')));
        req.on('error', (e: NodeJS.ErrnoException) => resolve(`${e.code ?? 'error'} ${e.message}`));
        req.end();
      });
      if (outcome === '200') {
        this.#ok++;
        this.#onOk();
      } else {
        this.#failures.push(`${base}: ${outcome}`);
      }
    }
  }
}
