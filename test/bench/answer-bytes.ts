// What an ext_proc server answers one request_headers message with, byte for byte, and its gRPC status:
// the benchmark gives the bare reference servers the service's own answer and checks that they send
// exactly it, so a floor measures the same bytes on the wire and nothing else.
import { credentials, makeGenericClientConstructor, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import type { ProcessingRequest } from '../../src/protocol/messages.ts';
import { encodeRequest } from '../../src/protocol/proto.ts';
import { processDefinition } from '../support/raw-processor.ts';

const Raw = makeGenericClientConstructor(processDefinition(), 'ExternalProcessor');

export interface RawExchange {
  readonly answers: Buffer[];
  /** The stream's gRPC status code (0 is OK). */
  readonly status: number;
}

/** Streams `count` copies of the message, `concurrency` at a time, on one connection. */
export async function rawExchanges(port: number, message: ProcessingRequest, count = 1, concurrency = 8): Promise<RawExchange[]> {
  const client = new Raw(`127.0.0.1:${port}`, credentials.createInsecure()) as unknown as {
    Process(): ClientDuplexStream<Buffer, Buffer>;
    close(): void;
  };
  const bytes = encodeRequest(message);
  const one = () =>
    new Promise<RawExchange>((resolve) => {
      const answers: Buffer[] = [];
      const call = client.Process();
      call.on('data', (b: Buffer) => {
        answers.push(b);
        call.end();
      });
      call.on('error', (e: ServiceError) => resolve({ answers, status: e.code }));
      call.on('status', (s: { code: number }) => {
        if (s.code === 0) resolve({ answers, status: 0 });
      });
      call.write(bytes);
    });
  const results: RawExchange[] = [];
  try {
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(concurrency, count) }, async () => {
        while (next < count) {
          next += 1;
          results.push(await one());
        }
      }),
    );
  } finally {
    client.close();
  }
  return results;
}

/**
 * Checks that every exchange ended with status OK and exactly `expected`; returns a description of the
 * first difference, or undefined.
 */
export function differs(exchanges: readonly RawExchange[], expected: Buffer): string | undefined {
  for (const [i, e] of exchanges.entries()) {
    if (e.status !== 0) return `stream ${i} ended with gRPC status ${e.status}`;
    if (e.answers.length !== 1 || !(e.answers[0] as Buffer).equals(expected)) {
      return `stream ${i} answered ${e.answers.map((a) => a.toString('hex')).join(',')}, not ${expected.toString('hex')}`;
    }
  }
  return undefined;
}
