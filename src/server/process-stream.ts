// The ext_proc stream loop: the only code that knows the stream's rules. One stream carries one HTTP
// request. Its first request_headers message is answered by the processor; any other message the
// processor did not ask for is answered with a harmless CONTINUE; a stream that breaks the protocol
// is ended with a gRPC status. EOF and CANCELLED are how Envoy ends every stream, not errors.
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Answers } from '../protocol/answers.ts';
import type { ProcessingRequest } from '../protocol/messages.ts';
import type { RequestReader } from '../protocol/request-reader.ts';
import type { CallHandlers, GrpcCall } from './grpc-transport.ts';
import { Status } from './grpc-wire.ts';
import type { ProcessResult, RequestProcessor } from './processor.ts';

export interface StreamDeps {
  readonly processor: RequestProcessor;
  readonly answers: Answers;
  readonly logger: Logger;
  readonly metrics: Pick<Metrics, 'streamsActive'>;
  /** Concurrent streams allowed; beyond that requests are answered 503 overloaded. */
  readonly maxStreams: number;
  /** Streams open now on this server (shared by its streams). */
  readonly load: StreamLoad;
  /** Decodes a message, keeping only the headers the processor reads. */
  readonly requests: RequestReader;
}

/** Counts the streams open on a server, and tells whoever waits when none are left (graceful stop). */
export class StreamLoad {
  active = 0;
  readonly #idle = new Set<() => void>();

  enter(): void {
    this.active += 1;
  }

  leave(): void {
    this.active -= 1;
    if (this.active === 0) for (const resolve of this.#idle) resolve();
  }

  /** Resolves when no stream is open (at once if none is). */
  idle(): Promise<void> {
    if (this.active === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.#idle.delete(done);
        resolve();
      };
      this.#idle.add(done);
    });
  }
}

export function handleProcessStream(call: GrpcCall, deps: StreamDeps): CallHandlers {
  // Only a held (waking) request needs a signal; aborting one builds a DOMException, which is too dear
  // to pay on every stream, so the controller exists only when asked for.
  let abort: AbortController | undefined;
  const signal = () => (abort ??= new AbortController()).signal;
  let headersSeen = false;
  let pending = false;
  let finished = false;

  // Runs once however the stream ends: frees the request's place and wait slot, if it holds them.
  const cleanup = () => {
    if (finished) return;
    finished = true;
    if (!headersSeen) return;
    deps.load.leave();
    deps.metrics.streamsActive.dec();
    // A pending answer may still ask for the signal (a token checked, then a wake): it must find it
    // aborted. Other streams pay for an abort only when a signal was made.
    if (pending) (abort ??= new AbortController()).abort();
    else abort?.abort();
  };
  const fail = (code: number, details: string) => {
    deps.logger.debug({ details }, 'ext_proc stream ended for a protocol error');
    call.fail(code, details);
    cleanup();
  };
  // Sends an answer, or waits for a pending one (extending Envoy's timer first when asked), which may
  // itself lead to another (a token checked, then a wake).
  const deliver = (result: ProcessResult): void => {
    if (Buffer.isBuffer(result)) {
      pending = false;
      return call.send(result);
    }
    pending = true;
    if (result.overrideMs !== undefined) call.send(deps.answers.overrideTimeout(result.overrideMs));
    result.answer.then(deliver, (error: unknown) => {
      pending = false;
      deps.logger.error({ err: error }, 'held request failed');
      call.send(deps.answers.error({ code: 'internal_error' }));
    });
  };
  const onMessage = (message: ProcessingRequest) => {
    const kind = message.request;
    if (kind === undefined) return fail(Status.INVALID_ARGUMENT, 'ProcessingRequest carries no message');
    // In observability mode Envoy does not wait for (or accept) answers.
    if (message.observability_mode === true) return;
    if (kind !== 'request_headers') return call.send(deps.answers.continueFor(kind));
    if (headersSeen) return fail(Status.FAILED_PRECONDITION, 'request_headers sent twice on one stream');
    // A stream counts toward --max-streams from its request, not from its HEADERS: streams that carry
    // none (a peer opening thousands and sending nothing) never crowd out Envoy's requests; the
    // transport times them out.
    headersSeen = true;
    deps.load.enter();
    deps.metrics.streamsActive.inc();
    if (deps.load.active > deps.maxStreams) return call.send(deps.answers.error({ code: 'overloaded' }));
    let result;
    try {
      result = deps.processor.process(message.request_headers?.headers?.headers, signal);
    } catch (error) {
      deps.logger.error({ err: error }, 'processing request headers failed');
      return call.send(deps.answers.error({ code: 'internal_error' }));
    }
    deliver(result);
  };
  return {
    message: (bytes) => {
      let message: ProcessingRequest;
      try {
        message = deps.requests.read(bytes);
      } catch {
        return fail(Status.INVALID_ARGUMENT, 'ProcessingRequest could not be decoded');
      }
      onMessage(message);
    },
    // Envoy half-closes when it has nothing more to send. While an answer is still held, that means
    // the client went away: release the request; otherwise end our side normally.
    halfClose: () => {
      if (pending) cleanup();
      call.finish();
      cleanup();
    },
    cancel: cleanup,
  };
}
