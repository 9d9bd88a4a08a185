import { createServer, type AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { main } from '../../../src/main.ts';

async function run(argv: string[]): Promise<{ result: unknown; out: string; err: string }> {
  let out = '';
  let err = '';
  const result = await main(argv, {}, { stdout: (t) => (out += t), stderr: (t) => (err += t) });
  if (typeof result !== 'number') await result.stop();
  return { result, out, err };
}

/** Starts on free ports, quietly, with routes from the given file. */
const fileRoutes = (path: string, extra: string[] = []) => [
  '--log-level',
  'silent',
  '--grpc-port',
  '0',
  '--route-source',
  'file',
  '--routes-file',
  path,
  ...extra,
];

describe('main', () => {
  it('prints help and exits 0', async () => {
    const { result, out } = await run(['--help']);
    expect(result).toBe(0);
    expect(out).toContain('Usage: sandbox-extproc');
  });

  it('prints its version, commit and Node.js version with --version, and exits 0', async () => {
    const { result, out } = await run(['--version']);
    expect(result).toBe(0);
    expect(out).toBe(`sandbox-extproc 0.1.0 (commit unknown, node ${process.versions.node})\n`);
  });

  it('exits 2 on a bad setting, naming it', async () => {
    const { result, err } = await run(['--http-port', 'x']);
    expect(result).toBe(2);
    expect(err).toContain('--http-port');
  });

  it('exits 1 when the routes file cannot be read, saying which file', async () => {
    const { result, err } = await run(fileRoutes('/nonexistent/routes.yaml', ['--http-port', '0']));
    expect(result).toBe(1);
    expect(err).toContain('/nonexistent/routes.yaml');
  });

  it('exits 1 when the routes file holds no routes list', async () => {
    const { result, err } = await run(fileRoutes('/dev/null', ['--http-port', '0']));
    expect(result).toBe(1);
    expect(err).toContain('"routes" list');
  });

  it('exits 1 when the HTTP port is taken, saying which', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as AddressInfo).port;
    const { result, err } = await run(fileRoutes('/dev/null', ['--http-port', String(port)]));
    blocker.close();
    expect(result).toBe(1);
    expect(err).toContain(`127.0.0.1:${port}`);
  });
});

describe('the runtime', () => {
  it('refuses a Node older than 22.19, saying why (it lacks the HTTP/2 stream-reset limits)', async () => {
    for (const old of ['22.18.0', '20.20.2', '18.0.0']) {
      let err = '';
      const result = await main(['--help'], {}, { stdout: () => undefined, stderr: (t) => (err += t) }, old);
      expect(result).toBe(1);
      expect(err).toContain(`this is ${old}`);
      expect(err).toContain('stream-reset limits');
    }
  });

  it('runs on 22.19 and later', async () => {
    for (const version of ['22.19.0', '23.0.0', '24.21.0']) {
      expect(await main(['--help'], {}, { stdout: () => undefined, stderr: () => undefined }, version)).toBe(0);
    }
  });
});
