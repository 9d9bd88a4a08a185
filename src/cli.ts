#!/usr/bin/env node
// The sandbox-extproc command: runs main() and turns signals into a graceful stop, with a deadline.
// First: refuses a runtime too old before anything else loads.
import './runtime-guard.ts';
import type { App } from './app.ts';
import { main } from './main.ts';
import { flushLogs } from './observability/logger.ts';

/** Time past drain + grace for the last closes and log lines; after it the process exits regardless. */
const STOP_MARGIN_MS = 1000;
/** How long the last log lines may take to leave before an exit (a stalled reader gets no more). */
const FLUSH_MS = 250;

let app: App | undefined;
let signals = 0;
let exiting = false;

const exit = (code: number) => {
  exiting = true;
  process.exitCode = code;
  if (app === undefined) process.exit(code);
  else void flushLogs(app.logger, FLUSH_MS).then(() => process.exit(code));
};

function stop(running: App, signal: NodeJS.Signals): void {
  // SIGTERM ends the process within drain + grace + a margin whatever else happens: a stop that hangs,
  // or a log reader that went away, never keeps it alive (Kubernetes would SIGKILL it later, cutting
  // every held request without an answer).
  const deadline = running.config.drainDelay + running.config.shutdownGrace + STOP_MARGIN_MS;
  setTimeout(() => process.exit(1), deadline).unref();
  running.logger.info({ signal }, 'signal received');
  running.stop().then(
    () => exit(0),
    (error: unknown) => {
      running.logger.error({ err: error }, 'graceful stop failed');
      exit(1);
    },
  );
}

// Installed before start-up, so a signal that arrives while the service starts is not lost (the
// default action would kill it without a stop): it is acted on once the service is up.
let early: NodeJS.Signals | undefined;
const onSignal = (signal: NodeJS.Signals) => {
  signals += 1;
  // A second signal means "now": skip the drain.
  if (signals > 1) process.exit(130);
  if (app === undefined) early = signal;
  else stop(app, signal);
};
process.on('SIGTERM', onSignal);
process.on('SIGINT', onSignal);

const result = await main(process.argv.slice(2), process.env, {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
});

if (typeof result === 'number') {
  process.exitCode = result;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
} else {
  app = result;
  // A bad request never reaches here (each stream catches its own failures). Anything that does is a
  // bug that may have left the process in a state nobody reasoned about: log it and exit, so that
  // Kubernetes restarts a clean process, rather than live on degraded.
  const onBug = (what: string) => (error: unknown) => {
    if (exiting) return;
    result.logger.fatal({ err: error }, `${what}; exiting`);
    exit(1);
  };
  process.on('uncaughtException', onBug('uncaught exception'));
  process.on('unhandledRejection', onBug('unhandled rejection'));
  if (early !== undefined) stop(app, early);
}
