// OpenTelemetry's SDK and exporter are loaded only when tracing is on (review of issue 28): with tracing
// off their modules were evaluated at every start for nothing. A child Node runs main() from the
// sources with a resolve hook recording every @opentelemetry/* module asked for, starts the service
// on file routes and stops it.
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const MAIN = new URL('../../../src/main.ts', import.meta.url).href;

const SCRIPT = `
import { registerHooks } from 'node:module';
const asked = new Set();
registerHooks({
  resolve(specifier, context, next) {
    if (specifier.startsWith('@opentelemetry/')) asked.add(specifier);
    return next(specifier, context);
  },
});
const { main } = await import(${JSON.stringify(MAIN)});
const app = await main(JSON.parse(process.argv[1]), {}, { stdout: () => undefined, stderr: (t) => process.stderr.write(t) });
if (typeof app === 'number') process.exit(10 + app);
await app.stop();
process.stdout.write(JSON.stringify([...asked].sort()));
`;

/** The @opentelemetry/* modules a start and stop of the service with `args` loaded. */
function otelModulesLoaded(args: readonly string[]): Promise<string[]> {
  const routes = join(mkdtempSync(join(tmpdir(), 'sbx-trace-load-')), 'routes.yaml');
  writeFileSync(routes, JSON.stringify({ routes: [] }));
  const argv = [
    '--route-source',
    'file',
    '--routes-file',
    routes,
    '--grpc-port',
    '0',
    '--http-port',
    '0',
    '--log-level',
    'silent',
    ...args,
  ];
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--input-type=module', '--eval', SCRIPT, JSON.stringify(argv)],
      { encoding: 'utf8', timeout: 30_000 },
      (error, stdout, stderr) => (error ? reject(new Error(`${error.message}\n${stderr}`)) : resolve(JSON.parse(stdout) as string[])),
    );
  });
}

describe('tracing’s modules', () => {
  it('are not loaded when tracing is off, and are when it is on', async () => {
    // The API alone is asked for by prom-client itself (its exemplars), tracing on or off.
    expect((await otelModulesLoaded([])).filter((m) => m !== '@opentelemetry/api')).toEqual([]);
    // Nothing listens on port 9: no span is made (no request), so the stop sends nothing.
    expect(await otelModulesLoaded(['--tracing-endpoint', 'http://127.0.0.1:9'])).toEqual(
      expect.arrayContaining(['@opentelemetry/api', '@opentelemetry/exporter-trace-otlp-proto', '@opentelemetry/sdk-trace']),
    );
  }, 60_000);
});
