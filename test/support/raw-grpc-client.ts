// A gRPC client written on node:http2 directly, for tests that must control the wire: when HEADERS,
// each message, END_STREAM and RST_STREAM go out. (grpc-js, cancelling a call it has just started, may
// leave its HTTP/2 stream open on the server and its connection with it.) Messages are raw bytes.
import { connect, constants, type ClientHttp2Session } from 'node:http2';
import { PROCESS_PATH } from './raw-processor.ts';
import { grpcMessage } from './h2-frames.ts';

export interface RawResult {
  readonly responses: Buffer[];
  /** The call's gRPC status, or 'cancelled' when the client reset it before a status came. */
  readonly status: number | 'cancelled';
}

export type Ending = 'half-close' | 'cancel-after-send' | 'cancel-after-first-answer';

export class RawGrpcClient {
  readonly #session: ClientHttp2Session;

  constructor(port: number) {
    this.#session = connect(`http://127.0.0.1:${port}`);
    this.#session.on('error', () => undefined);
  }

  /** One call: sends the messages, then ends as told; resolves when the stream is closed. */
  exchange(messages: readonly Buffer[], ending: Ending, path = PROCESS_PATH): Promise<RawResult> {
    return new Promise((resolve) => {
      const stream = this.#session.request({
        ':method': 'POST',
        ':path': path,
        'content-type': 'application/grpc',
        te: 'trailers',
      });
      const responses: Buffer[] = [];
      let status: number | 'cancelled' = 'cancelled';
      let pending = Buffer.alloc(0);
      const cancel = () => stream.close(constants.NGHTTP2_CANCEL);
      const onStatus = (headers: Record<string, unknown>) => {
        if (headers['grpc-status'] !== undefined) status = Number(headers['grpc-status']);
      };
      stream.on('response', (headers) => onStatus(headers));
      stream.on('trailers', (headers) => onStatus(headers));
      stream.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
          const length = pending.readUInt32BE(1);
          responses.push(pending.subarray(5, 5 + length));
          pending = pending.subarray(5 + length);
          if (ending === 'cancel-after-first-answer' && responses.length === 1) cancel();
        }
      });
      stream.on('error', () => undefined);
      stream.on('close', () => resolve({ responses, status }));
      for (const m of messages) stream.write(grpcMessage(m));
      if (ending === 'half-close') stream.end();
      else if (ending === 'cancel-after-send') stream.write(Buffer.alloc(0), () => cancel());
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.#session.close(() => resolve()));
  }
}
