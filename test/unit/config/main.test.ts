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

describe('main', () => {
  it('prints help and exits 0', async () => {
    const { result, out } = await run(['--help']);
    expect(result).toBe(0);
    expect(out).toContain('Usage: sandbox-extproc');
  });

  it('exits 2 on a bad setting, naming it', async () => {
    const { result, err } = await run(['--http-port', 'x']);
    expect(result).toBe(2);
    expect(err).toContain('--http-port');
  });

  it('exits 1 when the routes file cannot be read, saying which file', async () => {
    const { result, err } = await run([
      '--log-level',
      'silent',
      '--grpc-port',
      '0',
      '--http-port',
      '0',
      '--route-source',
      'file',
      '--routes-file',
      '/nonexistent/routes.yaml',
    ]);
    expect(result).toBe(1);
    expect(err).toContain('/nonexistent/routes.yaml');
  });

  it('exits 1 when the routes file holds no routes list', async () => {
    const { result, err } = await run([
      '--log-level',
      'silent',
      '--grpc-port',
      '0',
      '--http-port',
      '0',
      '--route-source',
      'file',
      '--routes-file',
      '/dev/null',
    ]);
    expect(result).toBe(1);
    expect(err).toContain('"routes" list');
  });

  it('exits 1 when the HTTP port is taken, saying which', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as AddressInfo).port;
    const { result, err } = await run([
      '--log-level',
      'silent',
      '--grpc-port',
      '0',
      '--http-port',
      String(port),
      '--route-source',
      'file',
      '--routes-file',
      '/dev/null',
    ]);
    blocker.close();
    expect(result).toBe(1);
    expect(err).toContain(`127.0.0.1:${port}`);
  });
});
