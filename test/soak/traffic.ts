// Open-loop HTTP traffic through Envoy, accounted for at the transport level: every request sent ends as
// exactly one outcome, its HTTP status or the transport error that ended it (refused, reset, timed out),
// so sent = answered + errors holds by construction and is checked at the end.
import { request, Agent } from 'node:http';

export interface Outcome {
  readonly target: string;
  readonly status: number | undefined;
  readonly error: string | undefined;
  readonly ms: number;
}

export class Tally {
  sent = 0;
  answered = 0;
  readonly errors = new Map<string, number>();
  /** Status counts per target class ("stable", "churn", ...). */
  readonly statuses = new Map<string, Map<number, number>>();

  record(kind: string, outcome: Outcome): void {
    if (outcome.error !== undefined) {
      this.errors.set(outcome.error, (this.errors.get(outcome.error) ?? 0) + 1);
      return;
    }
    this.answered += 1;
    let byStatus = this.statuses.get(kind);
    if (byStatus === undefined) this.statuses.set(kind, (byStatus = new Map()));
    byStatus.set(outcome.status as number, (byStatus.get(outcome.status as number) ?? 0) + 1);
  }

  get errorCount(): number {
    let n = 0;
    for (const count of this.errors.values()) n += count;
    return n;
  }

  count(kind: string, status?: number): number {
    const byStatus = this.statuses.get(kind);
    if (byStatus === undefined) return 0;
    if (status !== undefined) return byStatus.get(status) ?? 0;
    let n = 0;
    for (const count of byStatus.values()) n += count;
    return n;
  }
}

const agent = new Agent({ keepAlive: true, maxSockets: 256 });

/** One GET through Envoy naming a sandbox; resolves with its outcome, never rejects. */
export function send(url: string, headers: Record<string, string>, timeoutMs = 30_000): Promise<Outcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    const settle = (status: number | undefined, error: string | undefined) => {
      if (settled) return;
      settled = true;
      resolve({ target: headers['e2b-sandbox-id'] ?? '', status, error, ms: performance.now() - started });
    };
    const req = request(url, { headers, agent, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => settle(res.statusCode, undefined));
      res.on('error', (e: NodeJS.ErrnoException) => settle(undefined, e.code ?? e.message));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) => settle(undefined, e.code ?? e.message));
    req.end();
  });
}
