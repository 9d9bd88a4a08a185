// Child processes for tests: output is collected line by line, and waits are on what the process
// prints (a line matching a pattern), each with a deadline. Nothing here sleeps or polls.
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createInterface } from 'node:readline';

export class TestProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  readonly #waiters = new Set<{ test: (line: string) => boolean; resolve: (line: string) => void }>();
  readonly exited: Promise<number | null>;

  constructor(name: string, command: string, args: readonly string[], options: SpawnOptions = {}) {
    this.name = name;
    this.child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
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
