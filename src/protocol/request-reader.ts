// The request path's reader of ext_proc's ProcessingRequest. The full decoder (proto.ts) makes an
// object, a key string and a Buffer for every header Envoy sends (a dozen a request, ~3.5 KB of garbage
// per stream, a quarter of all the service allocates for one); the service reads five or so. This
// reader walks the same wire format with protobufjs's Reader and keeps only the headers it is told to:
// the others are skipped by comparing their key's bytes, without allocating. What it keeps is exactly
// what the full decoder would give for those headers (same order, same values, the same quirks:
// test/unit/protocol/request-reader.test.ts compares the two on generated and corrupted messages).
import protobuf from 'protobufjs/minimal.js';
import { REQUEST_KINDS, type HeaderValue, type HttpHeaders, type ProcessingRequest, type RequestKind } from './messages.ts';

const { Reader } = protobuf;
type WireReader = protobuf.Reader;

/** ProcessingRequest's oneof `request`, by field number, in declaration order. */
const KINDS: readonly (RequestKind | undefined)[] = [undefined, undefined, ...REQUEST_KINDS];
const OBSERVABILITY_MODE = 10;

export class RequestReader {
  /** The header names kept, as bytes, grouped by length (a key of another length is rejected at once). */
  readonly #wanted = new Map<number, { readonly name: string; readonly bytes: Buffer }[]>();

  /** `headerNames`: the (lower-case) names whose headers the service reads; all others are dropped. */
  constructor(headerNames: Iterable<string>) {
    for (const name of new Set(headerNames)) {
      const bytes = Buffer.from(name, 'utf8');
      const group = this.#wanted.get(bytes.length) ?? [];
      group.push({ name, bytes });
      this.#wanted.set(bytes.length, group);
    }
  }

  /** Reads one message; throws, as the full decoder does, on bytes that are not one. */
  read(bytes: Buffer): ProcessingRequest {
    const r = Reader.create(bytes);
    const message: ProcessingRequest = {};
    // The full decoder reports the last member of the oneof in declaration order that is present.
    let kind = 0;
    while (r.pos < r.len) {
      const tag = r.uint32();
      const field = tag >>> 3;
      switch (field) {
        case 2:
          // A repeated occurrence replaces the earlier one, as protobufjs decodes it.
          message.request_headers = this.#httpHeaders(r, r.uint32(), 1);
          break;
        // The other members are read through and dropped (the answer to any of them is CONTINUE; Envoy
        // sends them only to a processor that asks), so that what the full decoder refuses is refused.
        case 3:
          this.#httpHeaders(r, r.uint32(), 1);
          break;
        case 4:
        case 5:
          this.#body(r, r.uint32(), 1);
          break;
        case 6:
        case 7:
          this.#trailers(r, r.uint32(), 1);
          break;
        case OBSERVABILITY_MODE:
          message.observability_mode = r.bool();
          break;
        default:
          r.skipType(tag & 7, 0);
      }
      // Fields 0 and 1 are no member: KINDS has none for them.
      if (field <= 7) kind = Math.max(kind, field);
    }
    const request = KINDS[kind];
    if (request !== undefined) message.request = request;
    return message;
  }

  /** HttpHeaders: headers (a HeaderMap) = 1, end_of_stream = 3. */
  #httpHeaders(r: WireReader, length: number, depth: number): HttpHeaders {
    const outer = enter(r, length, depth);
    const end = r.len;
    const headers: HttpHeaders = {};
    while (r.pos < end) {
      const tag = r.uint32();
      const field = tag >>> 3;
      if (field === 1) headers.headers = this.#headerMap(r, r.uint32(), depth + 1);
      else if (field === 3) headers.end_of_stream = r.bool();
      else r.skipType(tag & 7, depth);
    }
    leave(r, end, outer);
    return headers;
  }

  /** HttpBody: body (bytes) = 1, end_of_stream = 2. */
  #body(r: WireReader, length: number, depth: number): void {
    const outer = enter(r, length, depth);
    const end = r.len;
    while (r.pos < end) {
      const tag = r.uint32();
      const field = tag >>> 3;
      if (field === 1) r.skip(r.uint32());
      else if (field === 2) r.bool();
      else r.skipType(tag & 7, depth);
    }
    leave(r, end, outer);
  }

  /** HttpTrailers: trailers (a HeaderMap) = 1. */
  #trailers(r: WireReader, length: number, depth: number): void {
    const outer = enter(r, length, depth);
    const end = r.len;
    while (r.pos < end) {
      const tag = r.uint32();
      if (tag >>> 3 === 1) this.#headerMap(r, r.uint32(), depth + 1);
      else r.skipType(tag & 7, depth);
    }
    leave(r, end, outer);
  }

  /** HeaderMap: headers (repeated HeaderValue) = 1. */
  #headerMap(r: WireReader, length: number, depth: number): { headers?: HeaderValue[] } {
    const outer = enter(r, length, depth);
    const end = r.len;
    const kept: HeaderValue[] = [];
    let seen = false;
    while (r.pos < end) {
      const tag = r.uint32();
      if (tag >>> 3 === 1) {
        seen = true;
        const header = this.#header(r, r.uint32(), depth + 1);
        if (header !== undefined) kept.push(header);
      } else r.skipType(tag & 7, depth);
    }
    leave(r, end, outer);
    // The full decoder leaves an empty list out; a list whose headers were all dropped is kept empty.
    return seen ? { headers: kept } : {};
  }

  /**
   * HeaderValue: key = 1, value = 2 (strings), raw_value = 3 (bytes). Undefined when its key is not
   * wanted: then nothing is allocated for it.
   */
  #header(r: WireReader, length: number, depth: number): HeaderValue | undefined {
    const outer = enter(r, length, depth);
    const end = r.len;
    // Stryker disable next-line UnaryOperator: equivalent, a key never seen is told by keyStart alone
    let keyStart = -1;
    // Stryker disable next-line UnaryOperator: equivalent, read only once keyStart says a key was seen
    let keyEnd = -1;
    let valueAt = -1;
    let rawAt = -1;
    while (r.pos < end) {
      const tag = r.uint32();
      const field = tag >>> 3;
      if (field === 1 || field === 2) {
        // Strings as protobufjs's Buffer reader takes them: cut at the message's end, never past it.
        const at = r.pos;
        const size = r.uint32();
        const start = r.pos;
        r.pos = Math.min(start + size, end);
        if (field === 1) {
          keyStart = start;
          keyEnd = r.pos;
        } else valueAt = at;
      } else if (field === 3) {
        rawAt = r.pos;
        r.skip(r.uint32());
      } else r.skipType(tag & 7, depth);
    }
    const name = keyStart === -1 ? undefined : this.#match(r.buf as Buffer, keyStart, keyEnd);
    let header: HeaderValue | undefined;
    if (name !== undefined) {
      // Only now is anything made: each field read again where it was last seen (the last one wins).
      header = { key: name };
      const walked = r.pos;
      if (valueAt !== -1) {
        r.pos = valueAt;
        header.value = r.string();
      }
      if (rawAt !== -1) {
        r.pos = rawAt;
        header.raw_value = r.bytes() as Buffer;
      }
      r.pos = walked;
    }
    leave(r, end, outer);
    return header;
  }

  #match(buf: Buffer, start: number, end: number): string | undefined {
    const group = this.#wanted.get(end - start);
    if (group === undefined) return undefined;
    for (const { name, bytes } of group) if (buf.compare(bytes, 0, bytes.length, start, end) === 0) return name;
    return undefined;
  }
}

/**
 * Enters an embedded message of `length` bytes as protobufjs's decoder does: refused when it runs past
 * the enclosing one or nests too deep; reads within it stop at its end. Returns the enclosing end.
 */
function enter(r: WireReader, length: number, depth: number): number {
  if (depth > Reader.recursionLimit) throw new Error('maximum nesting depth exceeded');
  const end = r.pos + length;
  if (end > r.len) throw new RangeError('index out of range');
  const outer = r.len;
  r.len = end;
  return outer;
}

/** Leaves an embedded message: its last field must end exactly at its end. */
function leave(r: WireReader, end: number, outer: number): void {
  // Stryker disable next-line all: equivalent, protobufjs's reads are bounds-checked, so none ends past the
  // message's end; kept as its decoder keeps it, should that change.
  if (r.pos !== end) throw new RangeError('index out of range');
  r.len = outer;
}
