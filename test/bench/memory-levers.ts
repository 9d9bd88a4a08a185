// `node test/bench/memory-levers.ts [--sandboxes 100000] [--rounds 2]` (after `npm run build`): the RSS
// after an initial sync of N OpenKruise Sandboxes, for each candidate set of Node flags (docs/benchmarks.md,
// "The tail, lever by lever"). The objects are written once to a real API server; a fresh service is
// started on them per candidate and round, its RSS read when it logs its initial sync and 5 s later,
// with V8's heap figures from its /metrics. Prints one JSON line per measurement. Not a bench step: the
// scale step measures the shipping flags; this compares candidates for them.
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { ControlPlane } from '../support/controlplane.ts';
import { runBuilt, startServiceProcess } from '../support/service-process.ts';
import { BulkWriter, pool } from './bulk-writer.ts';
import { OPENKRUISE } from './families.ts';
import { ServiceMetrics } from './service-metrics.ts';

const CANDIDATES: readonly (readonly string[])[] = [
  ['--max-semi-space-size=8'],
  ['--max-semi-space-size=8', '--optimize-for-size'],
  ['--max-semi-space-size=2'],
  ['--max-semi-space-size=1'],
  [],
];

const { values } = parseArgs({ options: { sandboxes: { type: 'string', default: '100000' }, rounds: { type: 'string', default: '2' } } });
const size = Number(values.sandboxes);
const ns = 'memory';
const ip = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
runBuilt.value = true;
const plane = await ControlPlane.start();
try {
  const writer = new BulkWriter(plane, OPENKRUISE);
  const kubeconfig = await plane.serviceIdentity('sandbox-extproc', [ns]);
  await plane.ensureNamespace(ns);
  const started = performance.now();
  await pool(size, 200, async (i) => {
    await writer.create(ns, OPENKRUISE.object(ns, `s${i}`, `${ns}-${i}`));
    await writer.patch(ns, `s${i}`, { status: OPENKRUISE.runningStatus(ip(i)) }, 'status');
  });
  writer.close();
  console.log(JSON.stringify({ msg: 'written', sandboxes: size, seconds: (performance.now() - started) / 1000 }));
  for (let round = 0; round < Number(values.rounds); round += 1) {
    for (const flags of CANDIDATES) {
      const start = performance.now();
      const service = await startServiceProcess(['--kubeconfig', kubeconfig, '--namespaces', ns], { nodeFlags: flags });
      try {
        await service.process.waitForLine(/routes synced from Kubernetes/, 300_000);
        const syncSeconds = (performance.now() - start) / 1000;
        const atSync = service.memory().rss;
        await sleep(5_000);
        const metrics = await new ServiceMetrics(service).refresh();
        const mb = (bytes: number) => Math.round(bytes / 1e6);
        console.log(
          JSON.stringify({
            flags: flags.join(' '),
            round,
            syncSeconds,
            rssAtSyncMB: mb(atSync),
            rss5sMB: mb(service.memory().rss),
            heapUsedMB: mb(metrics.value('nodejs_heap_size_used_bytes')),
            heapTotalMB: mb(metrics.value('nodejs_heap_size_total_bytes')),
            externalMB: mb(metrics.value('nodejs_external_memory_bytes')),
          }),
        );
      } finally {
        await service.stop();
      }
    }
  }
} finally {
  await plane.stop();
}
