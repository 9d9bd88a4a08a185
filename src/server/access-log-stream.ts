// The gRPC access log service's one method (client streaming): Envoy streams batches of access log
// entries for as long as it runs; each entry for a request the service routed is handed on as activity.
// Envoy expects no answer until it closes the stream.
import type { Logger } from '../observability/logger.ts';
import { readActivityFrom, type ActivityFact } from '../protocol/access-log.ts';
import type { CallHandlers, GrpcCall } from './grpc-transport.ts';
import { Status } from './grpc-wire.ts';

const EMPTY = Buffer.alloc(0);

export function handleAccessLogStream(call: GrpcCall, onActivity: (fact: ActivityFact) => void, logger: Logger): CallHandlers {
  return {
    message: (bytes) => {
      let facts: ActivityFact[];
      try {
        facts = readActivityFrom(bytes);
      } catch {
        return call.fail(Status.INVALID_ARGUMENT, 'StreamAccessLogsMessage could not be decoded');
      }
      for (const fact of facts) {
        try {
          onActivity(fact);
        } catch (error) {
          logger.error({ err: error }, 'noting activity failed');
        }
      }
    },
    halfClose: () => {
      call.send(EMPTY); // StreamAccessLogsResponse has no fields
      call.finish();
    },
    // Envoy going away (or the stream cut at shutdown) ends it; nothing to clean up.
    cancel: () => undefined,
  };
}
