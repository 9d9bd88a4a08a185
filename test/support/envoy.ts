// Runs the real Envoy binary on loopback with the project's bootstrap. Ports are picked by Envoy
// (port 0) and read from its admin API once it logs that it is serving.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestProcess } from './process.ts';
import { renderEnvoyConfig, type EnvoyValues } from './envoy-config.ts';
import { toolPath } from './tools.ts';

export interface EnvoyOptions {
  readonly extprocPort: number;
  readonly messageTimeout?: string;
  readonly maxMessageTimeout?: string;
  /** Edits the rendered config (tests of variants only). */
  readonly transform?: (yaml: string) => string;
  /** Extra component log levels (e.g. 'router:debug'), for a test that waits on Envoy's own log line. */
  readonly componentLogLevels?: string;
  /**
   * How often Envoy reports requests still open to the service's access log (envoy.yaml: 30s), for tests
   * whose timeouts are seconds long.
   */
  readonly accessLogFlushInterval?: string;
}

export interface RunningEnvoy {
  readonly port: number;
  readonly adminPort: number;
  readonly process: TestProcess;
  readonly url: string;
  /** Access log entries (the JSON lines Envoy writes to stdout). */
  accessLog(): Record<string, string>[];
  /** Resolves with the next access log entry matching the predicate. */
  waitForAccessLog(match: (entry: Record<string, string>) => boolean, timeoutMs?: number): Promise<Record<string, string>>;
  stat(name: string): Promise<number>;
  stop(): Promise<void>;
}

export async function startEnvoy(options: EnvoyOptions): Promise<RunningEnvoy> {
  const dir = mkdtempSync(join(tmpdir(), 'sbx-envoy-'));
  const values: EnvoyValues = {
    ADMIN_PORT: 0,
    LISTEN_ADDRESS: '127.0.0.1',
    LISTEN_PORT: 0,
    EXTPROC_HOST: '127.0.0.1',
    EXTPROC_PORT: options.extprocPort,
    MESSAGE_TIMEOUT: options.messageTimeout ?? '1s',
    MAX_MESSAGE_TIMEOUT: options.maxMessageTimeout ?? '300s',
  };
  let rendered = renderEnvoyConfig(values);
  if (options.accessLogFlushInterval !== undefined) {
    if (!rendered.includes('access_log_flush_interval: 30s')) throw new Error('envoy.yaml: the access log flush interval moved');
    rendered = rendered.replace('access_log_flush_interval: 30s', `access_log_flush_interval: ${options.accessLogFlushInterval}`);
  }
  const configPath = join(dir, 'envoy.yaml');
  writeFileSync(configPath, options.transform ? options.transform(rendered) : rendered);
  const adminPath = join(dir, 'admin-address');
  const envoy = new TestProcess('envoy', toolPath('SBX_ENVOY'), [
    '-c',
    configPath,
    '--admin-address-path',
    adminPath,
    '--disable-hot-restart',
    // Files Envoy writes (health-check events) reach their readers within 50 ms, not 10 s.
    '--file-flush-interval-msec',
    '50',
    '--concurrency',
    '1',
    '--log-level',
    'info',
    '--component-log-level',
    ['upstream:warn,config:warn,main:info', ...(options.componentLogLevels === undefined ? [] : [options.componentLogLevels])].join(','),
  ]);
  try {
    await envoy.waitForLine(/starting main dispatch loop/, 30_000);
  } catch (error) {
    await envoy.stop();
    throw error;
  }
  const admin = `http://${readFileSync(adminPath, 'utf8').trim()}`;
  const listeners = (await (await fetch(`${admin}/listeners?format=json`)).json()) as {
    listener_statuses: { name: string; local_address: { socket_address: { port_value: number } } }[];
  };
  const edge = listeners.listener_statuses.find((l) => l.name === 'edge');
  if (edge === undefined) throw new Error('envoy: no edge listener');
  const port = edge.local_address.socket_address.port_value;
  const adminPort = Number(new URL(admin).port);
  const accessLog = () => envoy.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, string>);
  return {
    port,
    adminPort,
    process: envoy,
    url: `http://127.0.0.1:${port}`,
    accessLog,
    async waitForAccessLog(match, timeoutMs = 10_000) {
      const parse = (line: string) => (line.startsWith('{') ? (JSON.parse(line) as Record<string, string>) : undefined);
      const line = await envoy.waitFor(
        (l) => {
          const e = parse(l);
          return e !== undefined && match(e);
        },
        timeoutMs,
        'an access log entry',
      );
      return parse(line) as Record<string, string>;
    },
    async stat(name: string) {
      const text = await (await fetch(`${admin}/stats?filter=${encodeURIComponent(`^${name}$`)}`)).text();
      const match = /: (\d+)\s*$/m.exec(text);
      return match ? Number(match[1]) : 0;
    },
    stop: () => envoy.stop(),
  };
}
