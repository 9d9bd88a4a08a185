// Structured JSON logs. The request path logs only at debug, so disabled levels cost nothing there.
//
// Lines go to stdout through LogWriter, which never blocks the process and never throws: whoever reads
// the log (a container runtime, a log collector, a test harness) may exit, close its end or stop
// reading, and the service must still serve and still stop on SIGTERM. pino's default destination
// cannot promise that: its exit hook flushes synchronously and retries a failed write (EPIPE included)
// forever, which kept a SIGTERMed process alive once its parent had gone (issue #13).
import { fstatSync, write as fsWrite } from 'node:fs';
import { Socket } from 'node:net';
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/** Bytes of log lines held while the reader is slow; past that, lines are dropped (and counted). */
const MAX_BUFFERED = 4 * 1024 * 1024;

/**
 * A bounded, asynchronous writer to a file descriptor. A pipe or socket (what a container runtime or a
 * parent process gives) is written through the event loop in non-blocking mode, so a reader that stops
 * reading costs buffered lines, never a blocked thread: a write blocked in the thread pool would hold
 * even process.exit(), which joins the pool. Anything else (a file, /dev/null, a terminal) cannot stall
 * and is written with fs.write. After a write error (EPIPE: the reader went away) it writes no more.
 */
export class LogWriter implements DestinationStream {
  readonly #maxBuffered: number;
  readonly #socket: Socket | undefined;
  readonly #fd: number;
  #fileQueue: string[] = [];
  #fileWriting = false;
  #broken: string | undefined;
  readonly #drained = new Set<() => void>();
  /** Lines dropped because the reader fell too far behind. */
  dropped = 0;

  constructor(fd = 1, maxBuffered = MAX_BUFFERED) {
    this.#fd = fd;
    this.#maxBuffered = maxBuffered;
    const stat = fstatSync(fd);
    if (stat.isFIFO() || stat.isSocket()) {
      // libuv opens the descriptor in non-blocking mode. (Nothing else in the process may touch
      // process.stdout: Node would switch the same pipe back to blocking writes.)
      const socket = new Socket({ fd, readable: false, writable: true });
      socket.on('error', (error: NodeJS.ErrnoException) => this.#fail(error.code ?? 'error'));
      socket.on('drain', () => this.#checkDrained());
      socket.unref();
      this.#socket = socket;
    }
  }

  /** Why writing stopped (the error code), if it did. */
  get broken(): string | undefined {
    return this.#broken;
  }

  write(line: string): void {
    if (this.#broken !== undefined) return;
    const socket = this.#socket;
    if (socket !== undefined) {
      if (socket.writableLength + line.length > this.#maxBuffered) this.dropped += 1;
      else socket.write(line, () => this.#checkDrained());
      return;
    }
    this.#fileQueue.push(line);
    if (!this.#fileWriting) this.#writeFile();
  }

  /** Calls back once every line written so far is out (or can never be). pino's logger.flush() uses it. */
  flush(callback: () => void = () => undefined): void {
    this.#drained.add(callback);
    this.#checkDrained();
  }

  #pending(): boolean {
    if (this.#broken !== undefined) return false;
    return this.#socket !== undefined ? this.#socket.writableLength > 0 : this.#fileWriting;
  }

  #checkDrained(): void {
    if (this.#pending()) return;
    for (const done of this.#drained) done();
    this.#drained.clear();
  }

  #fail(code: string): void {
    this.#broken = code;
    this.#fileQueue = [];
    this.#socket?.destroy();
    this.#checkDrained();
  }

  #writeFile(): void {
    if (this.#fileQueue.length === 0 || this.#broken !== undefined) {
      this.#fileWriting = false;
      this.#checkDrained();
      return;
    }
    this.#fileWriting = true;
    const chunk = Buffer.from(this.#fileQueue.join(''));
    this.#fileQueue = [];
    fsWrite(this.#fd, chunk, 0, chunk.length, null, (error) => {
      if (error) this.#fail(error.code ?? 'error');
      else this.#writeFile();
    });
  }
}

export function createLogger(level: string, destination: DestinationStream = new LogWriter(1)): Logger {
  return pino(
    {
      name: 'sandbox-extproc',
      level,
      base: { pid: process.pid },
      // Tokens never reach a log line, whatever object a caller passes.
      redact: { paths: ['accessToken', '*.accessToken', 'headers["x-access-token"]', 'token'], censor: '[redacted]' },
    },
    destination,
  );
}

/** Resolves when the logger's lines are out, or after timeoutMs: a stalled reader never holds an exit. */
export function flushLogs(logger: Logger, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    timer.unref();
    logger.flush(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
