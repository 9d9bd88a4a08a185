// A grpc.health.v1 client for tests: Check, and Watch (the server streams each status change), so a
// test waits for NOT_SERVING or SERVING as an event.
import { credentials, makeGenericClientConstructor, type ClientReadableStream } from '@grpc/grpc-js';

const identity = (b: Buffer) => b;
const Health = makeGenericClientConstructor(
  {
    Check: {
      path: '/grpc.health.v1.Health/Check',
      requestStream: false,
      responseStream: false,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
    Watch: {
      path: '/grpc.health.v1.Health/Watch',
      requestStream: false,
      responseStream: true,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    },
  },
  'Health',
);

export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';
const STATUSES: ServingStatus[] = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];
// HealthCheckResponse{status=1}: an empty message is UNKNOWN (0).
const decode = (b: Buffer): ServingStatus => STATUSES[b.length >= 2 && b[0] === 0x08 ? (b[1] as number) : 0] ?? 'UNKNOWN';

interface HealthClient {
  Check(request: Buffer, callback: (error: Error | null, response: Buffer) => void): void;
  Watch(request: Buffer): ClientReadableStream<Buffer>;
  close(): void;
}

export class HealthWatch {
  readonly statuses: ServingStatus[] = [];
  readonly #client: HealthClient;
  readonly #call: ClientReadableStream<Buffer>;
  readonly #waiters = new Set<() => void>();

  /** Watches the server as a whole (service ""), on a gRPC address such as 127.0.0.1:9002. */
  constructor(address: string) {
    this.#client = new Health(address, credentials.createInsecure()) as unknown as HealthClient;
    this.#call = this.#client.Watch(Buffer.alloc(0));
    this.#call.on('data', (b: Buffer) => {
      this.statuses.push(decode(b));
      for (const wake of this.#waiters) wake();
    });
    this.#call.on('error', () => undefined);
  }

  /** Resolves when the latest status is `status` (at once if it already is); rejects at the deadline. */
  until(status: ServingStatus, timeoutMs: number): Promise<void> {
    if (this.statuses.at(-1) === status) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.statuses.at(-1) !== status) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`health did not turn ${status} within ${timeoutMs} ms (seen: ${this.statuses.join(', ')})`));
      }, timeoutMs);
      this.#waiters.add(check);
    });
  }

  close(): void {
    this.#call.cancel();
    this.#client.close();
  }
}

/** One Check of the server as a whole. */
export async function healthCheck(address: string): Promise<ServingStatus> {
  const client = new Health(address, credentials.createInsecure()) as unknown as HealthClient;
  try {
    return decode(await new Promise<Buffer>((resolve, reject) => client.Check(Buffer.alloc(0), (e, r) => (e ? reject(e) : resolve(r)))));
  } finally {
    client.close();
  }
}
