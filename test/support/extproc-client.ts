// A gRPC client for the ext_proc service, for tests that speak the protocol directly (as Envoy would,
// or as a misbehaving peer would: `raw` sends arbitrary bytes as a message).
import {
  credentials,
  makeGenericClientConstructor,
  type ChannelCredentials,
  type ClientDuplexStream,
  type ServiceError,
} from '@grpc/grpc-js';
import type { ProcessingRequest, ProcessingResponse } from '../../src/protocol/messages.ts';
import { decodeResponse, encodeRequest } from '../../src/protocol/proto.ts';
import { processDefinition } from './raw-processor.ts';

const Typed = makeGenericClientConstructor(
  processDefinition({ requestSerialize: encodeRequest as never, responseDeserialize: decodeResponse }),
  'ExternalProcessor',
);
const Raw = makeGenericClientConstructor(processDefinition({ responseDeserialize: decodeResponse }), 'ExternalProcessor');

export interface StreamResult {
  readonly responses: ProcessingResponse[];
  readonly status: { code: number; details: string };
}

export class ExtProcClient {
  readonly #typed: InstanceType<typeof Typed>;
  readonly #raw: InstanceType<typeof Raw>;

  constructor(address: string, channelCredentials: ChannelCredentials = credentials.createInsecure()) {
    this.#typed = new Typed(address, channelCredentials);
    this.#raw = new Raw(address, channelCredentials);
  }

  /**
   * Opens a stream, sends the messages, and half-closes after `closeAfter` answers arrive (at once when
   * 0). `cancelWhen` cancels the stream when it settles (an event the test chooses, never a timer);
   * `onResponse` sees each answer as it arrives.
   */
  exchange(
    messages: readonly (ProcessingRequest | Buffer)[],
    options: {
      raw?: boolean;
      closeAfter?: number;
      cancelWhen?: Promise<unknown>;
      onResponse?: (response: ProcessingResponse, index: number) => void;
    } = {},
  ): Promise<StreamResult> {
    const client = options.raw ? this.#raw : this.#typed;
    return new Promise((resolve) => {
      const responses: ProcessingResponse[] = [];
      const call = (client as unknown as { Process(): ClientDuplexStream<unknown, ProcessingResponse> }).Process();
      const closeAfter = options.closeAfter ?? 0;
      call.on('data', (r: ProcessingResponse) => {
        responses.push(r);
        options.onResponse?.(r, responses.length - 1);
        if (responses.length === closeAfter) call.end();
      });
      call.on('error', (error: ServiceError) => resolve({ responses, status: { code: error.code, details: error.details } }));
      call.on('status', (s: { code: number; details: string }) => {
        if (s.code === 0) resolve({ responses, status: { code: 0, details: s.details } });
      });
      for (const m of messages) call.write(m);
      if (closeAfter === 0 && options.cancelWhen === undefined) call.end();
      void options.cancelWhen?.finally(() => call.cancel());
    });
  }

  close(): void {
    this.#typed.close();
    this.#raw.close();
  }
}
