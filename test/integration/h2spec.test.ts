// h2spec, the HTTP/2 conformance tool, against the gRPC port (plaintext h2c), on the ext_proc path. The
// cases that fail must be exactly those docs/h2spec.md lists and explains (each is nghttp2's or Node's
// behaviour, below the service): a new failure is a regression, a case that starts to pass means the
// document is out of date.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execTracked } from '../support/process.ts';
import { startService, type RunningService } from '../support/service.ts';
import { REPO_ROOT, toolPath } from '../support/tools.ts';

let dir: string;
let service: RunningService;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'sbx-h2spec-'));
  const routes = join(dir, 'routes.yaml');
  writeFileSync(routes, 'routes: [{ id: sbx, podIP: 10.9.9.9 }]\n');
  service = await startService(['--route-source', 'file', '--routes-file', routes]);
});

afterAll(() => service?.stop());

/** The cases docs/h2spec.md lists, as "package | title": those that fail, and those that fail or pass by timing. */
function documented(): { failing: string[]; timing: string[] } {
  const doc = readFileSync(`${REPO_ROOT}docs/h2spec.md`, 'utf8');
  const [failing = '', timing = ''] = doc.split('| h2spec case (timing) |');
  const cases = (text: string) => [...text.matchAll(/^\| `([^`]+)` (.+?) \| /gm)].map((m) => `${m[1]} | ${m[2]}`).sort();
  return { failing: cases(failing), timing: cases(timing) };
}

describe('h2spec', () => {
  it('passes every case but those docs/h2spec.md explains', async () => {
    const report = join(dir, 'h2spec.xml');
    // h2spec exits non-zero when any case fails; the report says which.
    await execTracked(toolPath('SBX_H2SPEC'), [
      '-h',
      '127.0.0.1',
      '-p',
      String(service.listening.grpcPort),
      '-P',
      '/envoy.service.ext_proc.v3.ExternalProcessor/Process',
      '-j',
      report,
    ]).catch(() => undefined);
    // The report can hold raw bytes h2spec echoes (opaque data), so it is read as text, not XML.
    const xml = readFileSync(report).toString('latin1');
    const cases = [...xml.matchAll(/<testcase package="([^"]*)" classname="([^"]*)"[^>]*>([\s\S]*?)<\/testcase>/g)];
    // Titles are XML-escaped in the report (h2spec quotes "open"); the document writes them plainly.
    const unescape = (text: string) => text.replaceAll('&#34;', '"').replaceAll('&quot;', '"').replaceAll('&amp;', '&');
    const failed = cases.filter((c) => /<(error|failure|skipped)/.test(c[3] as string)).map((c) => unescape(`${c[1]} | ${c[2]}`));
    expect(cases.length).toBe(145);
    const { failing, timing } = documented();
    expect(timing.length).toBeGreaterThan(0);
    expect(failed.filter((c) => !timing.includes(c)).sort()).toEqual(failing);
  }, 120_000);
});
