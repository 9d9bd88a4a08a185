// The image built from the Dockerfile, run as users run it: its own user (65532) with a read-only root
// filesystem and no capabilities; it holds only what runs; SIGTERM drains in-flight streams.
import { mkdtempSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { credentials, makeGenericClientConstructor, type ClientDuplexStream } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ProcessingResponse } from '../../../src/protocol/messages.ts';
import { decodeResponse, encodeRequest } from '../../../src/protocol/proto.ts';
import { createNetwork, docker, inspect, runLabels, signal, waitForContainerLog, waitForExit } from '../../support/docker.ts';
import { processDefinition } from '../../support/raw-processor.ts';
import { execTracked } from '../../support/process.ts';
import { toolPath } from '../../support/tools.ts';

const skip = inject('containerSkip');

describe.skipIf(skip !== '')('the image', () => {
  const image = inject('image');
  const labels = runLabels(inject('runId'));
  let network: string;
  let dir: string;

  beforeAll(async () => {
    network = (await createNetwork(`${labels['sandbox-extproc.test-run']}-image`, labels)).name;
    dir = mkdtempSync(join(tmpdir(), 'sbx-image-'));
    chmodSync(dir, 0o755);
    writeFileSync(join(dir, 'routes.yaml'), 'routes:\n  - id: alpha\n    podIP: 10.1.2.3\n');
    chmodSync(join(dir, 'routes.yaml'), 0o644);
  });

  afterAll(async () => {
    if (network) await docker(['network', 'rm', network]).catch(() => undefined);
  });

  /** Runs the image as a user would: no --user (its own), read-only, no capabilities, file routes. */
  async function runService(...args: string[]): Promise<{ id: string; ip: string }> {
    const labelArgs = Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]);
    const id = (
      await docker([
        ...['run', '-d', '--pull', 'never', ...labelArgs, '--network', network, '--read-only'],
        ...['--cap-drop', 'ALL', '--security-opt', 'no-new-privileges', '--volume', `${dir}/routes.yaml:/etc/routes.yaml:ro`],
        image,
        ...['--route-source', 'file', '--routes-file', '/etc/routes.yaml', '--grpc-host', '0.0.0.0', '--http-host', '0.0.0.0', ...args],
      ])
    ).trim();
    await waitForContainerLog(id, /"msg":"sandbox-extproc listening"/);
    return { id, ip: (await inspect(id)).ip(network) };
  }

  it('runs as uid 65532 on a read-only root filesystem without capabilities, and serves', async () => {
    const { id, ip } = await runService();
    const facts = await inspect(id);
    expect(facts.user).toBe('65532:65532');
    expect(facts.readOnly).toBe(true);
    const status = await docker(['exec', id, 'node', '-e', "process.stdout.write(require('fs').readFileSync('/proc/1/status','utf8'))"]);
    expect(status).toMatch(/^Uid:\s+65532\s+65532\s+65532\s+65532$/m);
    expect(status).toMatch(/^CapEff:\s+0+$/m);
    expect((await fetch(`http://${ip}:9003/readyz`)).status).toBe(200);
    expect(await healthCheck(`${ip}:9002`)).toBe('SERVING');
    const answer = await openStream(`${ip}:9002`).ask('alpha');
    expect(JSON.stringify(answer.dynamic_metadata)).toContain('10.1.2.3:49983');
    await docker(['rm', '-f', id]);
  });

  it('holds only what runs: node and its libraries, the bundle and proto/; no shell, npm or node_modules', async () => {
    const id = (
      await docker(['create', '--pull', 'never', ...Object.entries(labels).flatMap(([k, v]) => ['--label', `${k}=${v}`]), image])
    ).trim();
    const files = await exportedFiles(id);
    await docker(['rm', id]);
    expect(files).toContain('usr/local/bin/node');
    expect(files).toContain('app/dist/sandbox-extproc.mjs');
    expect(files.some((f) => f.startsWith('app/proto/'))).toBe(true);
    for (const absent of [
      'bin/sh',
      'usr/bin/sh',
      'bin/bash',
      'usr/bin/apt-get',
      'usr/local/bin/npm',
      'usr/local/bin/npx',
      'usr/local/bin/corepack',
    ]) {
      expect(files, absent).not.toContain(absent);
    }
    expect(files.filter((f) => f.includes('node_modules'))).toEqual([]);
    expect(files.filter((f) => f.startsWith('app/')).every((f) => /^app\/(dist|proto)(\/|$)/.test(f))).toBe(true);
    // Its Debian packages carry their dpkg status (distroless's layout) and copyright.
    for (const pkg of ['base-files', 'libc6', 'libgcc-s1', 'gcc-12-base', 'libstdc++6']) {
      expect(files, pkg).toContain(`var/lib/dpkg/status.d/${pkg}`);
      // Its copyright, or its doc directory as a link to its source package's (libgcc-s1 -> gcc-12-base).
      expect(files.includes(`usr/share/doc/${pkg}/copyright`) || files.includes(`usr/share/doc/${pkg}`), pkg).toBe(true);
    }
    expect(files).toContain('etc/os-release');
  });

  // Issue 28: the image was FROM scratch with libraries copied by ldd, so scanners saw no package
  // (syft listed node alone, and no distribution): glibc's and libstdc++'s CVEs went unreported. syft's
  // listing needs no vulnerability database; Trivy and Grype read the same dpkg status.
  it('shows a scanner its Debian packages (glibc, libstdc++) and node: syft lists them', async () => {
    const { stdout } = await execTracked(toolPath('SBX_SYFT'), ['scan', `docker:${image}`, '--output', 'syft-json', '--quiet'], {
      env: { ...process.env, SYFT_CHECK_FOR_APP_UPDATE: 'false' },
      maxBuffer: 64 * 1024 * 1024,
    });
    const sbom = JSON.parse(stdout) as { artifacts: { type: string; name: string; version: string }[]; distro: { id?: string } };
    const found = new Map(sbom.artifacts.map((a) => [`${a.type} ${a.name}`, a.version]));
    expect(sbom.distro.id).toBe('debian');
    for (const pkg of ['libc6', 'libstdc++6', 'libgcc-s1', 'base-files']) expect(found.get(`deb ${pkg}`), pkg).toMatch(/\d/);
    expect(found.get('binary node')).toMatch(/^24\./);
  });

  it('drains on SIGTERM (node is PID 1): health turns NOT_SERVING, requests are still answered during the drain delay, then it exits 0', async () => {
    const { id, ip } = await runService('--drain-delay', '3s', '--shutdown-grace', '10s');
    await signal(id, 'TERM');
    await waitForContainerLog(id, /"msg":"shutting down"/);
    expect(await healthCheck(`${ip}:9002`)).toBe('NOT_SERVING');
    expect((await fetch(`http://${ip}:9003/readyz`)).status).toBe(503);
    const stream = openStream(`${ip}:9002`);
    expect(JSON.stringify((await stream.ask('alpha')).dynamic_metadata)).toContain('10.1.2.3:49983');
    await stream.end();
    expect(await waitForExit(id)).toBe(0);
    expect(await docker(['logs', id])).toContain('"msg":"stopped"');
  });
});

/** The paths of a container's filesystem (docker export, read as a stream). */
function exportedFiles(id: string): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const exporter = spawn('docker', ['export', id], { stdio: ['ignore', 'pipe', 'inherit'] });
    const lister = spawn('tar', ['-t'], { stdio: ['pipe', 'pipe', 'inherit'] });
    exporter.stdout.pipe(lister.stdin);
    const files: string[] = [];
    createInterface({ input: lister.stdout }).on('line', (line) => files.push(line.replace(/^\.\//, '').replace(/\/$/, '')));
    lister.once('exit', (code) => (code === 0 ? resolve(files) : reject(new Error(`tar -t exited ${code}`))));
  });
}

const Health = makeGenericClientConstructor(
  {
    Check: {
      path: '/grpc.health.v1.Health/Check',
      requestStream: false,
      responseStream: false,
      requestSerialize: () => Buffer.alloc(0),
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: (b: Buffer) => b,
      responseDeserialize: (b: Buffer) => b,
    },
  },
  'Health',
);

/** grpc.health.v1 Check for the whole server: SERVING (1) or NOT_SERVING (2). */
async function healthCheck(address: string): Promise<string> {
  const client = new Health(address, credentials.createInsecure()) as unknown as {
    Check(req: object, cb: (e: Error | null, r: Buffer) => void): void;
    close(): void;
  };
  try {
    const reply = await new Promise<Buffer>((resolve, reject) => client.Check({}, (e, r) => (e ? reject(e) : resolve(r))));
    return ({ 1: 'SERVING', 2: 'NOT_SERVING' } as Record<number, string>)[reply[1] ?? 0] ?? `status ${reply[1]}`;
  } finally {
    client.close();
  }
}

const Processor = makeGenericClientConstructor(
  processDefinition({ requestSerialize: encodeRequest as never, responseDeserialize: decodeResponse }),
  'ExternalProcessor',
);

/** An ext_proc stream: ask() sends one request's headers and resolves with the answer; end() half-closes and resolves with the final status code. */
function openStream(address: string): { ask(id: string): Promise<ProcessingResponse>; end(): Promise<number> } {
  const client = new Processor(address, credentials.createInsecure());
  const call = (client as unknown as { Process(): ClientDuplexStream<unknown, ProcessingResponse> }).Process();
  const answers: ((r: ProcessingResponse) => void)[] = [];
  call.on('data', (r: ProcessingResponse) => answers.shift()?.(r));
  const status = new Promise<number>((resolve) => {
    call.on('error', (e: { code: number }) => resolve(e.code));
    call.on('status', (s: { code: number }) => resolve(s.code));
  });
  return {
    ask: (id) =>
      new Promise((resolve) => {
        answers.push(resolve);
        call.write({ request_headers: { headers: { headers: [{ key: 'e2b-sandbox-id', raw_value: Buffer.from(id) }] } } });
      }),
    end: async () => {
      call.end();
      const code = await status;
      client.close();
      return code;
    },
  };
}
