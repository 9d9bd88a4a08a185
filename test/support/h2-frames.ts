// A raw HTTP/2 client on a plain socket, for what node:http2 will not send: frames of any size and
// order, a closed flow-control window, PINGs left unanswered, resets in bulk, garbage. It writes
// frames by hand (RFC 9113 §4, §6; header blocks as HPACK literals without indexing, RFC 7541 §6.2.2)
// and parses every frame the server sends, but decodes no header block: tests read statuses through
// node:http2 or grpc-js, and here only which frames came, on which stream, with which flags and codes.
import { connect, type Socket } from 'node:net';

export const FrameType = {
  DATA: 0,
  HEADERS: 1,
  PRIORITY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
} as const;
export const Flag = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4 } as const;
export const Setting = { MAX_CONCURRENT_STREAMS: 3, INITIAL_WINDOW_SIZE: 4, MAX_FRAME_SIZE: 5 } as const;
export const ErrorCode = { NO_ERROR: 0, PROTOCOL_ERROR: 1, REFUSED_STREAM: 7, CANCEL: 8, ENHANCE_YOUR_CALM: 11 } as const;

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
}

export function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([header, payload]);
}

export function settings(entries: readonly [number, number][]): Buffer {
  const payload = Buffer.alloc(6 * entries.length);
  entries.forEach(([id, value], i) => {
    payload.writeUInt16BE(id, 6 * i);
    payload.writeUInt32BE(value, 6 * i + 2);
  });
  return frame(FrameType.SETTINGS, 0, 0, payload);
}

/** An HPACK integer with an N-bit prefix (RFC 7541 §5.1). */
function hpackInt(value: number, prefixBits: number, firstByte = 0): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByte | value]);
  const bytes = [firstByte | max];
  let rest = value - max;
  while (rest >= 128) {
    bytes.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}

const hpackString = (text: string) => {
  const bytes = Buffer.from(text);
  return Buffer.concat([hpackInt(bytes.length, 7), bytes]);
};

/** A header block of literals without indexing, new names (no Huffman): any encoder's decoder reads it. */
export function headerBlock(fields: readonly [string, string][]): Buffer {
  return Buffer.concat(fields.flatMap(([name, value]) => [Buffer.from([0]), hpackString(name), hpackString(value)]));
}

export function headers(streamId: number, fields: readonly [string, string][], endStream = false): Buffer {
  return frame(FrameType.HEADERS, Flag.END_HEADERS | (endStream ? Flag.END_STREAM : 0), streamId, headerBlock(fields));
}

/** The request headers of a gRPC call. */
export const grpcRequest = (path: string, extra: readonly [string, string][] = []): [string, string][] => [
  [':method', 'POST'],
  [':scheme', 'http'],
  [':path', path],
  [':authority', 'localhost'],
  ['content-type', 'application/grpc'],
  ['te', 'trailers'],
  ...extra,
];

export const data = (streamId: number, bytes: Buffer, endStream = false) =>
  frame(FrameType.DATA, endStream ? Flag.END_STREAM : 0, streamId, bytes);

export function windowUpdate(streamId: number, increment: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(increment);
  return frame(FrameType.WINDOW_UPDATE, 0, streamId, payload);
}

export function rstStream(streamId: number, code: number): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(code);
  return frame(FrameType.RST_STREAM, 0, streamId, payload);
}

export const ping = (opaque: Buffer, ack = false) => frame(FrameType.PING, ack ? Flag.ACK : 0, 0, opaque);

/** A gRPC message: the 5-byte prefix (compressed flag, length) and the bytes. */
export function grpcMessage(message: Buffer, compressed = 0): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = compressed;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

/** A GOAWAY's last stream ID and error code. */
export const goawayOf = (f: Frame) => ({ lastStreamId: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4) });
/** An RST_STREAM's error code. */
export const rstCodeOf = (f: Frame) => f.payload.readUInt32BE(0);

export interface RawOptions {
  /** SETTINGS sent with the preface (e.g. INITIAL_WINDOW_SIZE 0: the server may send no DATA). */
  readonly settings?: readonly [number, number][];
  /** Answer the server's PINGs (on by default); off, the peer looks dead to a keepalive. */
  readonly answerPings?: boolean;
  /** Give the server back the window its DATA used (on by default); off, a peer that reads nothing. */
  readonly replenish?: boolean;
}

export class RawH2Connection {
  readonly socket: Socket;
  readonly frames: Frame[] = [];
  readonly closed: Promise<void>;
  answerPings: boolean;
  readonly #replenish: boolean;
  /** What the server lets us send: the connection's window and each stream's (RFC 9113 §6.9). */
  #connectionWindow = 65_535;
  #initialStreamWindow = 65_535;
  readonly #streamWindows = new Map<number, number>();
  #pending: Buffer = Buffer.alloc(0);
  readonly #listeners = new Set<() => void>();
  #ended = false;

  private constructor(socket: Socket, options: RawOptions) {
    this.socket = socket;
    this.answerPings = options.answerPings ?? true;
    this.#replenish = options.replenish ?? true;
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.#ended = true;
        this.#notify();
        resolve();
      }),
    );
  }

  /** Connects and sends the preface and SETTINGS; the server's SETTINGS are acknowledged as they come. */
  static open(port: number, options: RawOptions = {}): Promise<RawH2Connection> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.off('error', reject);
        const connection = new RawH2Connection(socket, options);
        socket.write(Buffer.concat([PREFACE, settings(options.settings ?? [])]));
        resolve(connection);
      });
      socket.once('error', reject);
    });
  }

  get ended(): boolean {
    return this.#ended;
  }

  write(bytes: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  /** The first frame (already received or to come) matching `test`; rejects at the deadline or if the connection closes first. */
  waitFor(test: (f: Frame) => boolean, timeoutMs: number, what: string): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = this.frames.find(test);
        if (found !== undefined) return done(() => resolve(found));
        if (this.#ended) done(() => reject(new Error(`connection closed before ${what}`)));
      };
      const timer = setTimeout(() => done(() => reject(new Error(`no ${what} within ${timeoutMs} ms`))), timeoutMs);
      const done = (then: () => void) => {
        clearTimeout(timer);
        this.#listeners.delete(check);
        then();
      };
      this.#listeners.add(check);
      check();
    });
  }

  /** Resolves once `count` frames match `test`, or rejects at the deadline. */
  waitForCount(test: (f: Frame) => boolean, count: number, timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (this.frames.filter(test).length >= count) done(resolve);
        else if (this.#ended)
          done(() => reject(new Error(`connection closed with ${this.frames.filter(test).length} of ${count} ${what}`)));
      };
      const timer = setTimeout(
        () => done(() => reject(new Error(`${this.frames.filter(test).length} of ${count} ${what} within ${timeoutMs} ms`))),
        timeoutMs,
      );
      const done = (then: () => void) => {
        clearTimeout(timer);
        this.#listeners.delete(check);
        then();
      };
      this.#listeners.add(check);
      check();
    });
  }

  /** A PING round trip: every frame the server sent before its ACK has been received. */
  async barrier(timeoutMs = 5000): Promise<void> {
    const opaque = Buffer.from(`b${String(Math.random()).slice(2, 9)}`.padEnd(8, '0').slice(0, 8));
    this.write(ping(opaque));
    await this.waitFor((f) => f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0 && f.payload.equals(opaque), timeoutMs, 'PING ACK');
  }

  /**
   * Sends `bytes` on a stream as DATA frames of at most `frameSize` bytes, within the flow-control
   * windows the server grants; waits (up to `stallMs` each time) for WINDOW_UPDATEs. Resolves with the
   * bytes sent: fewer than asked when the server stopped granting window (or reset the stream).
   */
  async sendData(streamId: number, bytes: Buffer, frameSize: number, endStream: boolean, stallMs = 2000): Promise<number> {
    let offset = 0;
    while (offset < bytes.length || (endStream && offset === bytes.length && bytes.length === 0)) {
      if (this.#ended || this.#reset(streamId)) return offset;
      const room = Math.min(this.#connectionWindow, this.#streamWindow(streamId));
      if (room <= 0) {
        const granted = await this.#windowGrant(streamId, stallMs);
        if (!granted) return offset;
        continue;
      }
      // As many frames as fit the windows, in one write.
      const frames: Buffer[] = [];
      let budget = room;
      while (offset < bytes.length && budget > 0) {
        const size = Math.min(frameSize, budget, bytes.length - offset);
        const last = offset + size === bytes.length;
        frames.push(data(streamId, bytes.subarray(offset, offset + size), endStream && last));
        offset += size;
        budget -= size;
      }
      if (bytes.length === 0) frames.push(data(streamId, Buffer.alloc(0), true));
      this.#connectionWindow -= room - budget;
      this.#streamWindows.set(streamId, this.#streamWindow(streamId) - (room - budget));
      await new Promise<void>((resolve) => this.socket.write(Buffer.concat(frames), () => resolve()));
      if (bytes.length === 0) return 0;
    }
    return offset;
  }

  destroy(): void {
    this.socket.destroy();
  }

  #streamWindow(streamId: number): number {
    return this.#streamWindows.get(streamId) ?? this.#initialStreamWindow;
  }

  #reset(streamId: number): boolean {
    return this.frames.some(
      (f) =>
        f.streamId === streamId && (f.type === FrameType.RST_STREAM || (f.type === FrameType.HEADERS && (f.flags & Flag.END_STREAM) !== 0)),
    );
  }

  #windowGrant(streamId: number, timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.#ended || this.#reset(streamId)) done(false);
        else if (Math.min(this.#connectionWindow, this.#streamWindow(streamId)) > 0) done(true);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      const done = (granted: boolean) => {
        clearTimeout(timer);
        this.#listeners.delete(check);
        resolve(granted);
      };
      this.#listeners.add(check);
      check();
    });
  }

  #onData(chunk: Buffer): void {
    this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    while (this.#pending.length >= 9) {
      const length = this.#pending.readUIntBE(0, 3);
      if (this.#pending.length < 9 + length) break;
      const f: Frame = {
        type: this.#pending[3] as number,
        flags: this.#pending[4] as number,
        streamId: this.#pending.readUInt32BE(5) & 0x7fffffff,
        payload: Buffer.from(this.#pending.subarray(9, 9 + length)),
      };
      this.#pending = this.#pending.subarray(9 + length);
      this.#onFrame(f);
    }
    this.#notify();
  }

  #onFrame(f: Frame): void {
    this.frames.push(f);
    if (f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) === 0) {
      for (let i = 0; i + 6 <= f.payload.length; i += 6) {
        if (f.payload.readUInt16BE(i) !== Setting.INITIAL_WINDOW_SIZE) continue;
        const value = f.payload.readUInt32BE(i + 2);
        for (const [id, window] of this.#streamWindows) this.#streamWindows.set(id, window + value - this.#initialStreamWindow);
        this.#initialStreamWindow = value;
      }
      this.write(frame(FrameType.SETTINGS, Flag.ACK, 0));
    } else if (f.type === FrameType.PING && (f.flags & Flag.ACK) === 0 && this.answerPings) {
      this.write(ping(f.payload, true));
    } else if (f.type === FrameType.DATA && f.payload.length > 0 && this.#replenish) {
      const taken = [windowUpdate(0, f.payload.length)];
      if ((f.flags & Flag.END_STREAM) === 0) taken.push(windowUpdate(f.streamId, f.payload.length));
      this.write(Buffer.concat(taken));
    } else if (f.type === FrameType.WINDOW_UPDATE) {
      const increment = f.payload.readUInt32BE(0) & 0x7fffffff;
      if (f.streamId === 0) this.#connectionWindow += increment;
      else this.#streamWindows.set(f.streamId, this.#streamWindow(f.streamId) + increment);
    }
  }

  #notify(): void {
    for (const listener of [...this.#listeners]) listener();
  }
}
