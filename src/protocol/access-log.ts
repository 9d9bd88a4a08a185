// Envoy's gRPC access log service (proto/envoy/service/accesslog/v3/als.proto): the entries Envoy streams
// for requests that went to a sandbox, read down to the facts activity needs. Entries carry the request's
// dynamic metadata, so the sandbox ID and UID the service answered with come back here; periodic
// entries (access_log_options.access_log_flush_interval) keep coming while a websocket or a long
// response stays open.
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import { LOG_METADATA_NAMESPACE, SANDBOX_UID_KEY } from './answers.ts';
import { LOADER_OPTIONS, PROTO_DIR } from './proto.ts';
import type { StructValue } from './messages.ts';

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
  const value = struct?.fields[key];
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
