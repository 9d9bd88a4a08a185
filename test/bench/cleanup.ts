// Teardown for a benchmark step: whatever it started is stopped, in reverse order, even when the step
// fails halfway through starting things (a missing tool, a process that would not start). Each stop is
// tried; the first error is reported after all have run.
export class Cleanup {
  readonly #steps: (() => Promise<unknown> | unknown)[] = [];

  add(step: () => Promise<unknown> | unknown): void {
    this.#steps.push(step);
  }

  async run(): Promise<void> {
    let first: unknown;
    for (const step of this.#steps.splice(0).reverse()) {
      try {
        await step();
      } catch (error) {
        first ??= error;
      }
    }
    if (first !== undefined) throw first;
  }
}
