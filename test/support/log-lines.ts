// A logger whose lines a unit test reads back, parsed (the service's own pino setup, redaction included).
import { createLogger, type Logger } from '../../src/observability/logger.ts';

export function capturedLogger(level = 'debug'): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger(level, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}
