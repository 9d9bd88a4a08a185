// Structured JSON logs. The request path logs only at debug, so disabled levels cost nothing there.
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      name: 'sandbox-extproc',
      level,
      base: { pid: process.pid },
      // Tokens never reach a log line, whatever object a caller passes.
      redact: { paths: ['accessToken', '*.accessToken', 'headers["x-access-token"]', 'token'], censor: '[redacted]' },
    },
    destination,
  );
}
