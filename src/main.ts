// main(argv, env) as a plain function, so start-up and config validation are testable: it returns the
// running App, or an exit code when it stops before starting (help shown, or a bad setting).
import { App } from './app.ts';
import { ConfigError, loadConfig } from './config/load.ts';
import { runtimeProblem } from './runtime.ts';
import { versionText } from './version.ts';

export interface MainIO {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

export async function main(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  io: MainIO,
  nodeVersion: string = process.versions.node,
): Promise<App | number> {
  const problem = runtimeProblem(nodeVersion);
  if (problem !== undefined) {
    io.stderr(`sandbox-extproc: ${problem}\n`);
    return 1;
  }
  let loaded;
  try {
    loaded = loadConfig(argv, env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    io.stderr(`sandbox-extproc: ${error.message}\n`);
    return 2;
  }
  if (loaded.kind === 'help') {
    io.stdout(`${loaded.text}\n`);
    return 0;
  }
  if (loaded.kind === 'version') {
    io.stdout(`${versionText()}\n`);
    return 0;
  }
  let app: App;
  try {
    app = await App.create(loaded.config);
  } catch (error) {
    io.stderr(`sandbox-extproc: ${(error as Error).message}\n`);
    return 1;
  }
  try {
    await app.start();
  } catch (error) {
    app.logger.fatal({ err: (error as Error).message }, 'start-up failed');
    await app.stop().catch(() => undefined);
    io.stderr(`sandbox-extproc: ${(error as Error).message}\n`);
    return 1;
  }
  return app;
}
