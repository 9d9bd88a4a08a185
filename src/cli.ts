#!/usr/bin/env node
// The sandbox-extproc command: runs main() and turns signals into a graceful stop.
import { main } from './main.ts';

const result = await main(process.argv.slice(2), process.env, {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
});

if (typeof result === 'number') {
  process.exitCode = result;
} else {
  const app = result;
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    signals += 1;
    // A second signal means "now": skip the drain.
    if (signals > 1) process.exit(130);
    app.logger.info({ signal }, 'signal received');
    void app.stop().then(() => process.exit(0));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // The service never dies of one bad request; anything unexpected is logged and the process goes on.
  process.on('uncaughtException', (error) => app.logger.error({ err: error }, 'uncaught exception'));
  process.on('unhandledRejection', (error) => app.logger.error({ err: error }, 'unhandled rejection'));
}
