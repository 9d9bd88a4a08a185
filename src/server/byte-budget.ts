// Bytes the gRPC transport holds for peers (partial messages, answers queued for a peer that is not
// reading), counted per connection and for the whole server: a connection may hold at most its own
// limit, and all of them together at most the server's, so no peer can grow the process's memory
// without bound. Reserving is two additions and two comparisons: cheap enough for every answer.
export class ByteBudget {
  readonly limit: number;
  readonly #parent: ByteBudget | undefined;
  used = 0;

  constructor(limit: number, parent?: ByteBudget) {
    this.limit = limit;
    this.#parent = parent;
  }

  /** Takes `bytes` if this budget and its parent both have room; false (nothing taken) otherwise. */
  reserve(bytes: number): boolean {
    if (this.used + bytes > this.limit) return false;
    if (this.#parent !== undefined && !this.#parent.reserve(bytes)) return false;
    this.used += bytes;
    return true;
  }

  release(bytes: number): void {
    this.used -= bytes;
    this.#parent?.release(bytes);
  }
}
