// Envoy's gRPC access log service (proto/envoy/service/accesslog/v3/als.proto): the entries Envoy streams
// for requests that went to a sandbox, read down to the facts activity needs. Entries carry the request's
// dynamic metadata, so the sandbox ID and UID the service answered with come back here; periodic
// entries (access_log_options.access_log_flush_interval) keep coming while a websocket or a long
// response stays open.
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import protobuf from 'protobufjs/minimal.js';
import { LOG_METADATA_NAMESPACE, SANDBOX_UID_KEY } from './answers.ts';
import { LOADER_OPTIONS, PROTO_DIR } from './proto.ts';
import type { StructValue } from './messages.ts';

const { Reader } = protobuf;

export const ACCESS_LOG_SERVICE = 'envoy.service.accesslog.v3.AccessLogService';

interface LogEntry {
  common_properties?: { metadata?: { filter_metadata?: Record<string, StructValue> }; access_log_type?: string };
}

export interface StreamAccessLogsMessage {
  http_logs?: { log_entry?: LogEntry[] };
}

/** One entry's worth of activity: a request to this sandbox was open (or just ended) when it was logged. */
/** What an entry for a routed request came to, as counted (`sandbox_extproc_access_log_entries_total{result}`, README). */
export const ACCESS_LOG_RESULTS = ['activity', 'unknown'] as const;
export type AccessLogResult = (typeof ACCESS_LOG_RESULTS)[number];

export interface ActivityFact {
  readonly sandboxId: string;
  readonly uid: string;
  /** The stream is still open (a periodic entry) rather than finished. */
  readonly open: boolean;
}

function load(): MethodDefinition<StreamAccessLogsMessage, object> {
  const definition = loadSync('envoy/service/accesslog/v3/als.proto', { ...LOADER_OPTIONS, includeDirs: [PROTO_DIR] });
  const service = definition[ACCESS_LOG_SERVICE] as unknown as Record<string, MethodDefinition<StreamAccessLogsMessage, object>>;
  return service['StreamAccessLogs'] as MethodDefinition<StreamAccessLogsMessage, object>;
}

const method = load();

/** The method's path on the gRPC server. */
export const ACCESS_LOG_PATH = `/${ACCESS_LOG_SERVICE}/StreamAccessLogs`;
export const encodeAccessLogs = (message: StreamAccessLogsMessage): Buffer => method.requestSerialize(message);
export const decodeAccessLogs = (bytes: Buffer): StreamAccessLogsMessage => method.requestDeserialize(bytes);

const text = (struct: StructValue | undefined, key: string): string | undefined => {
  // A Struct with no fields decodes without `fields` at all.
  const value = struct?.fields?.[key];
  return value !== undefined && 'stringValue' in value ? value.stringValue : undefined;
};

/** The activity in one message: entries for requests the service sent to a sandbox. */
export function readActivity(message: StreamAccessLogsMessage): ActivityFact[] {
  const facts: ActivityFact[] = [];
  for (const entry of message.http_logs?.log_entry ?? []) {
    const common = entry.common_properties;
    const ours = common?.metadata?.filter_metadata?.[LOG_METADATA_NAMESPACE];
    const sandboxId = text(ours, 'sandbox_id');
    const uid = text(ours, SANDBOX_UID_KEY);
    if (sandboxId === undefined || uid === undefined) continue;
    facts.push({ sandboxId, uid, open: common?.access_log_type === 'DownstreamPeriodic' });
  }
  return facts;
}

/**
 * The activity in one message, read straight from its bytes: what readActivity(decodeAccessLogs(bytes))
 * gives for a message Envoy sends, without decoding the rest of each entry (every other namespace of its
 * metadata, every other field of ours) into objects. Envoy logs every request the service routed, so
 * this runs for each of them on the service's one thread: the full decoder's garbage and time were a
 * third of the tail the service adds behind Envoy (docs/benchmarks.md, "The tail, lever by lever").
 * Throws, as the full decoder does, on bytes that are not a message.
 */
export function readActivityFrom(bytes: Buffer): ActivityFact[] {
  const r = Reader.create(bytes);
  const facts: ActivityFact[] = [];
  const entry: EntryScan = { id: undefined, uid: undefined, open: false };
  while (r.pos < r.len) {
    const tag = r.uint32();
    if (tag >>> 3 === 2) {
      // A repeated http_logs replaces the earlier one, as in a decoded message.
      facts.length = 0;
      const end = limit(r);
      readEntries(r, end, facts, entry);
      r.pos = end;
    } else r.skipType(tag & 7);
  }
  return facts;
}

/** What one entry has told so far: our two fields, and whether the request is still open. */
interface EntryScan {
  id: string | undefined;
  uid: string | undefined;
  open: boolean;
}

const NAMESPACE = Buffer.from(LOG_METADATA_NAMESPACE);
const SANDBOX_ID = Buffer.from('sandbox_id');
const SANDBOX_UID = Buffer.from(SANDBOX_UID_KEY);
/** AccessLogType DownstreamPeriodic: the request is still open. */
const DOWNSTREAM_PERIODIC = 5;

/** The end of the embedded message that starts here (its length first); refused if it runs past its parent. */
function limit(r: protobuf.Reader): number {
  const length = r.uint32();
  const end = r.pos + length;
  if (end > r.len) throw new RangeError('index out of range');
  return end;
}

/** Whether bytes [start, end) of the message are `name`. */
const named = (r: protobuf.Reader, start: number, end: number, name: Buffer) =>
  end - start === name.length && (r.buf as Buffer).compare(name, 0, name.length, start, end) === 0;

/** HTTPAccessLogEntries: log_entry = 1 (repeated). Written without closures: this runs per request. */
function readEntries(r: protobuf.Reader, end: number, facts: ActivityFact[], entry: EntryScan): void {
  while (r.pos < end) {
    const tag = r.uint32();
    if (tag >>> 3 !== 1) {
      r.skipType(tag & 7);
      continue;
    }
    entry.id = entry.uid = undefined;
    entry.open = false;
    const entryEnd = limit(r);
    // HTTPAccessLogEntry: common_properties = 1.
    while (r.pos < entryEnd) {
      const t = r.uint32();
      if (t >>> 3 === 1) {
        const commonEnd = limit(r);
        readCommon(r, commonEnd, entry);
        r.pos = commonEnd;
      } else r.skipType(t & 7);
    }
    r.pos = entryEnd;
    if (entry.id !== undefined && entry.uid !== undefined) facts.push({ sandboxId: entry.id, uid: entry.uid, open: entry.open });
  }
}

/** AccessLogCommon: metadata = 17, access_log_type = 33. A repeated one replaces the earlier one. */
function readCommon(r: protobuf.Reader, end: number, entry: EntryScan): void {
  entry.id = entry.uid = undefined;
  entry.open = false;
  while (r.pos < end) {
    const tag = r.uint32();
    const field = tag >>> 3;
    if (field === 17) {
      entry.id = entry.uid = undefined;
      const metadataEnd = limit(r);
      readMetadata(r, metadataEnd, entry);
      r.pos = metadataEnd;
    } else if (field === 33) entry.open = r.uint32() === DOWNSTREAM_PERIODIC;
    else r.skipType(tag & 7);
  }
}

/** Metadata: filter_metadata = 1, a map entry (key = 1, value = 2: a Struct) per namespace; ours only. */
function readMetadata(r: protobuf.Reader, end: number, entry: EntryScan): void {
  while (r.pos < end) {
    const tag = r.uint32();
    if (tag >>> 3 !== 1) {
      r.skipType(tag & 7);
      continue;
    }
    const mapEnd = limit(r);
    let keyStart = -1;
    let keyEnd = -1;
    let valueStart = -1;
    let valueEnd = -1;
    while (r.pos < mapEnd) {
      const t = r.uint32();
      const field = t >>> 3;
      if (field === 1 || field === 2) {
        const fieldEnd = limit(r);
        if (field === 1) {
          keyStart = r.pos;
          keyEnd = fieldEnd;
        } else {
          valueStart = r.pos;
          valueEnd = fieldEnd;
        }
        r.pos = fieldEnd;
      } else r.skipType(t & 7);
    }
    // A later entry for the same namespace replaces an earlier one, as in a decoded map.
    if (keyStart !== -1 && named(r, keyStart, keyEnd, NAMESPACE)) {
      entry.id = entry.uid = undefined;
      if (valueStart !== -1) {
        r.pos = valueStart;
        readStruct(r, valueEnd, entry);
      }
    }
    r.pos = mapEnd;
  }
}

/** Struct: fields = 1, a map entry (key = 1, value = 2: a Value) per field; sandbox_id and sandbox_uid only. */
function readStruct(r: protobuf.Reader, end: number, entry: EntryScan): void {
  while (r.pos < end) {
    const tag = r.uint32();
    if (tag >>> 3 !== 1) {
      r.skipType(tag & 7);
      continue;
    }
    const fieldEnd = limit(r);
    let keyStart = -1;
    let keyEnd = -1;
    let text: string | undefined;
    while (r.pos < fieldEnd) {
      const t = r.uint32();
      const field = t >>> 3;
      if (field === 1) {
        const stop = limit(r);
        keyStart = r.pos;
        keyEnd = stop;
        r.pos = stop;
      } else if (field === 2) {
        // A later value replaces an earlier one: only its string (Value.string_value = 3) counts.
        text = undefined;
        const valueEnd = limit(r);
        while (r.pos < valueEnd) {
          const v = r.uint32();
          if (v >>> 3 === 3) text = r.string();
          else r.skipType(v & 7);
        }
        r.pos = valueEnd;
      } else r.skipType(t & 7);
    }
    r.pos = fieldEnd;
    if (keyStart === -1) continue;
    if (named(r, keyStart, keyEnd, SANDBOX_ID)) entry.id = text;
    else if (named(r, keyStart, keyEnd, SANDBOX_UID)) entry.uid = text;
  }
}
