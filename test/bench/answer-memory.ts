// Issue #12: a client picks the port, so a forward-answer cache keyed by (route, port) let anyone grow
// the service's memory by ~25 MB per running sandbox. Measured in a fresh process: 20 running sandboxes
// asked for every one of the 65,535 ports must grow RSS by under 20 MB, and the cached default-port
// answer (the hot path) must stay a lookup.
import { IMAGE_NODE_FLAGS } from '../support/service-process.ts';
import { REPO_ROOT } from '../support/tools.ts';
import type { Report } from './report.ts';
import { execTracked } from '../support/process.ts';

export async function measureAnswerMemory(report: Report, quick: boolean): Promise<void> {
  const ports = quick ? 20_000 : 65_535;
  // The image's Node flags (8 MB semi-spaces): the young generation a loaded service settles at.
  const args = ['--expose-gc', ...IMAGE_NODE_FLAGS, `${REPO_ROOT}test/bench/answer-memory-child.ts`, '20', String(ports)];
  const { stdout } = await execTracked(process.execPath, args, {
    maxBuffer: 1 << 20,
  });
  const figures = JSON.parse(stdout) as { rssGrowthMB: number; heapGrowthMB: number; uncachedNs: number; hitNs: number };
  report.atMost(`answer cache: RSS growth, 20 sandboxes x ${ports} ports`, figures.rssGrowthMB, 'MB', 20);
  report.info('answer cache: heap growth, same', figures.heapGrowthMB, 'MB');
  report.atMost('forward answer, default port (cached)', figures.hitNs, 'ns', quick ? 1000 : 500);
  report.info('forward answer, any other port (encoded per request)', figures.uncachedNs, 'ns');
}
