// The gRPC access log service's one method: Envoy streams batches of access log entries for as long as
// it runs; each entry for a request the service routed is handed on as activity. Envoy expects no
// answer until it closes the stream.
import type { ServerReadableStream, sendUnaryData } from '@grpc/grpc-js';
import type { Logger } from '../observability/logger.ts';
import { readActivity, type ActivityFact, type StreamAccessLogsMessage } from '../protocol/access-log.ts';

export function handleAccessLogStream(
  call: ServerReadableStream<StreamAccessLogsMessage, object>,
  done: sendUnaryData<object>,
  onActivity: (fact: ActivityFact) => void,
  logger: Logger,
): void {
  call.on('data', (message: StreamAccessLogsMessage) => {
    for (const fact of readActivity(message)) {
      try {
        onActivity(fact);
      } catch (error) {
        logger.error({ err: error }, 'noting activity failed');
      }
    }
  });
  call.on('end', () => done(null, {}));
  // Envoy going away (or the stream cut at shutdown) ends it; nothing to clean up.
  call.on('error', () => undefined);
}
