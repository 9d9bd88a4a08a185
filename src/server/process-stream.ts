// The ext_proc stream loop: the only code that knows the stream's rules. One stream carries one HTTP
// request. Its first request_headers message is answered by the processor; any other message the
// processor did not ask for is answered with a harmless CONTINUE; a stream that breaks the protocol
// is ended with a gRPC status. EOF and CANCELLED are how Envoy ends every stream, not errors.
import { status, type ServerDuplexStream } from '@grpc/grpc-js';
import type { Logger } from '../observability/logger.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { Answers } from '../protocol/answers.ts';
import type { ProcessingRequest } from '../protocol/messages.ts';
import type { RequestProcessor } from './processor.ts';

export interface StreamDeps {
  readonly processor: RequestProcessor;
  readonly answers: Answers;
  readonly logger: Logger;
  readonly metrics: Pick<Metrics, 'streamsActive'>;
  /** Concurrent streams allowed; beyond that requests are answered 503 overloaded. */
  readonly maxStreams: number;
  /** Streams open now on this server (shared by its streams). */
  readonly load: StreamLoad;
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

export function handleProcessStream(call: ServerDuplexStream<ProcessingRequest, Buffer>, deps: StreamDeps): void {
  // Only a held (waking) request needs a signal; aborting one builds a DOMException, which is too dear
  // to pay on every stream, so the controller exists only when asked for.
  let abort: AbortController | undefined;
  const signal = () => (abort ??= new AbortController()).signal;
  let headersSeen = false;
  let pending = false;
  let finished = false;
  deps.load.enter();
  deps.metrics.streamsActive.inc();

  // Runs once however the stream ends: frees the request's wait slot, if it holds one.
  const cleanup = () => {
    if (finished) return;
    finished = true;
    deps.load.leave();
    deps.metrics.streamsActive.dec();
    abort?.abort();
  };
  const write = (answer: Buffer) => {
    if (!finished && !call.cancelled && call.writable) call.write(answer);
  };
  const fail = (code: status, details: string) => {
    deps.logger.debug({ details }, 'ext_proc stream ended for a protocol error');
    if (!finished && !call.cancelled) call.emit('error', { code, details });
    cleanup();
  };

  call.on('data', (message: ProcessingRequest) => {
    const kind = message.request;
    if (kind === undefined) return fail(status.INVALID_ARGUMENT, 'ProcessingRequest carries no message');
    // In observability mode Envoy does not wait for (or accept) answers.
    if (message.observability_mode === true) return;
    if (kind !== 'request_headers') return write(deps.answers.continueFor(kind));
    if (headersSeen) return fail(status.FAILED_PRECONDITION, 'request_headers sent twice on one stream');
    headersSeen = true;
    if (deps.load.active > deps.maxStreams) return write(deps.answers.error({ code: 'overloaded' }));
    let result;
    try {
      result = deps.processor.process(message.request_headers?.headers?.headers, signal);
    } catch (error) {
      deps.logger.error({ err: error }, 'processing request headers failed');
      return write(deps.answers.error({ code: 'internal_error' }));
    }
    if (Buffer.isBuffer(result)) return write(result);
    pending = true;
    write(deps.answers.overrideTimeout(result.overrideMs));
    result.answer.then(
      (answer) => {
        pending = false;
        write(answer);
      },
      (error: unknown) => {
        pending = false;
        deps.logger.error({ err: error }, 'held request failed');
        write(deps.answers.error({ code: 'internal_error' }));
      },
    );
  });
  // Envoy half-closes when it has nothing more to send. While an answer is still held, that means
  // the client went away: release the request; otherwise end our side normally.
  call.on('end', () => {
    if (pending) cleanup();
    if (!call.cancelled) call.end();
    cleanup();
  });
  call.on('error', cleanup);
  call.on('cancelled', cleanup);
  call.on('close', cleanup);
}
