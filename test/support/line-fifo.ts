// A FIFO that a process writes lines to (Envoy's health-check event log), read line by line as they
// come, with waits on a line matching a test and a deadline: nothing polls the file.
import { execFileSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';

export class LineFifo {
  readonly path: string;
  readonly lines: string[] = [];
  readonly #waiters = new Set<() => void>();

  /** Makes the FIFO at `path` and starts reading it (the reader opens once a writer does). */
  constructor(path: string) {
    this.path = path;
    execFileSync('mkfifo', [path]);
    createInterface({ input: createReadStream(path) }).on('line', (line) => {
      this.lines.push(line);
      for (const wake of this.#waiters) wake();
    });
  }

  /** Resolves with the first line (already read, or to come) the test accepts; rejects at the deadline. */
  waitFor(match: (line: string) => boolean, timeoutMs: number, what: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.lines.find(match);
        if (found === undefined) return;
        this.#waiters.delete(check);
        clearTimeout(timer);
        resolve(found);
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`no line (${what}) within ${timeoutMs} ms; last: ${this.lines.slice(-3).join(' | ')}`));
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }
}
