// Closed-loop HTTP load for "no request fails" checks: each worker sends its next request when the last
// one has finished, one TCP connection per request, and every request is counted at the transport
// level: sent = answered (the expected status) + failed (any other status, or a socket error or
// timeout). Bounded: it stops at stop(), or by itself after maxRequests or maxMs.
import { request } from 'node:http';

export interface LoadResult {
  readonly sent: number;
  readonly answered: number;
  /** One line per failed request: its status and body, or the transport error. */
  readonly failures: readonly string[];
}

export class SteadyLoad {
  #running = true;
  #sent = 0;
  #answered = 0;
  readonly #failures: string[] = [];
  readonly #workers: Promise<void>[] = [];
  readonly #deadline: NodeJS.Timeout;

  readonly url: string;
  readonly headers: Record<string, string>;

  constructor(
    url: string,
    headers: Record<string, string>,
    options: { concurrency: number; maxRequests?: number; maxMs?: number; expectStatus?: number; timeoutMs?: number },
  ) {
    this.url = url;
    this.headers = headers;
    const maxRequests = options.maxRequests ?? 100_000;
    this.#deadline = setTimeout(() => (this.#running = false), options.maxMs ?? 300_000);
    for (let i = 0; i < options.concurrency; i++) {
      this.#workers.push(
        (async () => {
          while (this.#running && this.#sent < maxRequests) {
            this.#sent++;
            const failure = await this.#one(options.expectStatus ?? 200, options.timeoutMs ?? 10_000);
            if (failure === undefined) this.#answered++;
            else this.#failures.push(failure);
          }
        })(),
      );
    }
  }

  get sent(): number {
    return this.#sent;
  }

  /** Stops sending, waits for the requests in flight, and returns the counts. */
  async stop(): Promise<LoadResult> {
    this.#running = false;
    clearTimeout(this.#deadline);
    await Promise.all(this.#workers);
    return { sent: this.#sent, answered: this.#answered, failures: this.#failures };
  }

  #one(expectStatus: number, timeoutMs: number): Promise<string | undefined> {
    return new Promise((resolve) => {
      const req = request(this.url, { headers: this.headers, agent: false, timeout: timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve(
            res.statusCode === expectStatus ? undefined : `status ${res.statusCode}: ${Buffer.concat(chunks).toString().slice(0, 200)}`,
          ),
        );
        res.on('error', (error) => resolve(`response error: ${error.message}`));
      });
      req.on('timeout', () => req.destroy(new Error(`timed out after ${timeoutMs} ms`)));
      req.on('error', (error) => resolve(`transport error: ${error.message}`));
      req.end();
    });
  }
}
