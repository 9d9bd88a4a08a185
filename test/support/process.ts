// Child processes for tests and benchmarks: output is collected line by line, and waits are on what
// the process prints (a line matching a pattern), each with a deadline. Nothing here sleeps or polls.
// Every child is tracked, and none outlives the harness that started it, however that harness ends: a
// normal exit, a failure (an exception, a missing tool), or SIGINT / SIGTERM.
import { execFile, spawn, type ChildProcess, type ExecFileOptions, type SpawnOptions } from 'node:child_process';
import { createInterface } from 'node:readline';
import { isMainThread } from 'node:worker_threads';

const live = new Set<ChildProcess>();

/** Registers a child so that it is killed if the harness ends first. */
export function track<T extends ChildProcess>(child: T): T {
  if (child.exitCode === null && child.signalCode === null) {
    live.add(child);
    child.once('exit', () => live.delete(child));
  }
  return child;
}

/** execFile, tracked: resolves with the output when the command exits 0, rejects otherwise. */
export function execTracked(
  file: string,
  args: readonly string[],
  options: ExecFileOptions = {},
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    track(
      execFile(file, args, { encoding: 'utf8', ...options }, (error, stdout, stderr) => {
        if (error) reject(Object.assign(error, { stdout: String(stdout), stderr: String(stderr) }));
        else resolve({ stdout: String(stdout), stderr: String(stderr) });
      }),
    );
  });
}

/**
 * What `promise` gives, or `otherwise` once `ms` have passed (the timer cleared either way, so a test
 * that ends early leaves no timer behind to hold the worker).
 */
export async function within<T, U>(promise: Promise<T>, ms: number, otherwise: U): Promise<T | U> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<U>((resolve) => (timer = setTimeout(() => resolve(otherwise), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

function killAll(signal: NodeJS.Signals): void {
  for (const child of live) {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

// 'exit' runs on every way out but a signal or SIGKILL: normal end, process.exit(), an uncaught
// exception, an unhandled rejection. Only synchronous work is possible there, so SIGKILL.
process.on('exit', () => killAll('SIGKILL'));
// A signal's default action ends the process without 'exit': stop the children first (SIGTERM, then
// SIGKILL for any still there after a moment), then end as the signal would have.
if (isMainThread) {
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.once(signal, () => {
      killAll('SIGTERM');
      const exited = [...live].map((c) => new Promise((resolve) => c.once('exit', resolve)));
      const timer = setTimeout(() => process.exit(code), 3000);
      void Promise.all(exited).then(() => {
        clearTimeout(timer);
        process.exit(code);
      });
    });
  }
}

export class TestProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  readonly #waiters = new Set<{ test: (line: string) => boolean; resolve: (line: string) => void }>();
  readonly exited: Promise<number | null>;

  constructor(name: string, command: string, args: readonly string[], options: SpawnOptions = {}) {
    this.name = name;
    this.child = track(spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options }));
    // For tests of the harness itself (test/chaos/no-leftovers.test.ts): say what was started.
    if (process.env['SBX_TRACE_CHILDREN']) console.log(`child started: ${name} (pid ${this.child.pid})`);
    for (const stream of [this.child.stdout, this.child.stderr]) {
      if (stream) createInterface({ input: stream }).on('line', (line) => this.#onLine(line));
    }
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)));
  }

  /** Resolves with the first line (already seen or future) matching the pattern; rejects at the deadline or exit. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<string> {
    return this.waitFor((line) => pattern.test(line), timeoutMs, String(pattern));
  }

  waitFor(test: (line: string) => boolean, timeoutMs: number, what: string): Promise<string> {
    const seen = this.lines.find(test);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = {
        test,
        resolve: (line: string) => {
          cleanup();
          resolve(line);
        },
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${this.name}: no line matching ${what} within ${timeoutMs} ms; last output:\n${this.tail()}`));
      }, timeoutMs);
      const onExit = (code: number | null) => {
        cleanup();
        reject(new Error(`${this.name} exited (${code}) before printing ${what}; last output:\n${this.tail()}`));
      };
      const cleanup = () => {
        clearTimeout(timer);
        this.#waiters.delete(waiter);
        this.child.off('exit', onExit);
      };
      this.child.once('exit', onExit);
      this.#waiters.add(waiter);
    });
  }

  /** Resolves once `count` lines matching the test have been printed (those already seen count). */
  waitForLines(test: (line: string) => boolean, count: number, timeoutMs: number, what: string): Promise<void> {
    let seen = this.lines.filter(test).length;
    if (seen >= count) return Promise.resolve();
    const counted = (line: string) => test(line) && (seen += 1) >= count;
    return new Promise((resolve, reject) => {
      const waiter = { test: counted, resolve: () => (clearTimeout(timer), this.#waiters.delete(waiter), resolve()) };
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(new Error(`${this.name}: ${seen} of ${count} lines (${what}) within ${timeoutMs} ms; last output:\n${this.tail()}`));
      }, timeoutMs);
      this.#waiters.add(waiter);
    });
  }

  /** Calls the listener with every line printed from now on; returns the unsubscribe. */
  onLine(listener: (line: string) => void): () => void {
    const waiter = { test: (line: string) => (listener(line), false), resolve: () => undefined };
    this.#waiters.add(waiter);
    return () => this.#waiters.delete(waiter);
  }

  tail(count = 30): string {
    return this.lines.slice(-count).join('\n');
  }

  /** Stops the process: SIGTERM, then SIGKILL if it has not exited within graceMs. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  #onLine(line: string): void {
    this.lines.push(line);
    if (this.lines.length > 5000) this.lines.splice(0, 1000);
    for (const waiter of this.#waiters) if (waiter.test(line)) waiter.resolve(line);
  }
}
