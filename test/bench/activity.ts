// Activity writes under heavy traffic (issue #16): one sandbox with a pause timer receives requests as
// fast as h2load can send them straight to the service's ext_proc port; the API server's audit log
// counts the pause-timer writes. The rule writes once per (1 - fraction) x timeout, whatever the rate.
// OpenKruise's own controller runs the sandbox, so a timer that ran out would pause it for real.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster } from '../support/cluster.ts';
import { ControlPlane, SERVICE_USER, type AuditEvent } from '../support/controlplane.ts';
import { OpenKruiseController, OpenKruiseSandboxes } from '../support/openkruise.ts';
import { startServiceProcess } from '../support/service-process.ts';
import { h2load, namingMessage } from './grpc-load.ts';
import type { Report } from './report.ts';

const NS = 'activity';
const TIMEOUT_S = 6;
const FRACTION = 0.5;

export async function measureActivity(report: Report, quick: boolean): Promise<void> {
  const plane = await ControlPlane.start({ crds: OpenKruiseController.crds() });
  const dir = mkdtempSync(join(tmpdir(), 'sbx-activity-'));
  const cluster = await Cluster.start(plane);
  const controller = await OpenKruiseController.start(plane);
  try {
    await plane.ensureNamespace(NS);
    const kubeconfig = await plane.serviceIdentity('sandbox-extproc', [NS]);
    const sandboxes = new OpenKruiseSandboxes(plane, cluster);
    await sandboxes.create({ namespace: NS, name: 'hot', wake: { by: 'policy', pauseTimeout: `${TIMEOUT_S}s` } });
    // The timer starts once it runs, as E2B's auto-pause sets it.
    const pauseTime = new Date(Date.now() + TIMEOUT_S * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
    await sandboxes.patch(NS, 'hot', { spec: { pauseTime } });
    const seen = await sandboxes.record(NS, 'hot');
    const service = await startServiceProcess(
      [
        '--kubeconfig',
        kubeconfig,
        '--namespaces',
        NS,
        '--min-pause-timeout',
        '1s',
        '--activity-min-interval',
        '1s',
        '--activity-fraction',
        String(FRACTION),
      ],
      { cpu: 0 },
    );
    try {
      await service.process.waitForLine(/routes synced from Kubernetes/, 30_000);
      const total = quick ? 200_000 : 600_000;
      const started = Date.now();
      const load = await h2load(dir, service.grpcPort, total, 2, 8, namingMessage(`${NS}--hot`));
      const seconds = (Date.now() - started) / 1000;
      const writes = plane.auditEvents(
        (e: AuditEvent) => e.verb === 'patch' && e.objectRef?.name === 'hot' && e.user.username === SERVICE_USER,
      ).length;
      const bound = Math.ceil(seconds / ((1 - FRACTION) * TIMEOUT_S)) + 1;
      report.info('activity: requests/s to one sandbox', load.rps, 'req/s');
      report.equals('activity: failed requests', load.failed, 'requests', 0);
      report.atMost(
        `activity: pause-timer writes in ${seconds.toFixed(1)} s (timeout ${TIMEOUT_S} s, fraction ${FRACTION})`,
        writes,
        'writes',
        bound,
      );
      report.info('activity: writes per (1 - fraction) x timeout', writes / (seconds / ((1 - FRACTION) * TIMEOUT_S)), 'writes');
      seen.stop();
      // The controller pauses a sandbox by setting spec.paused when its pauseTime passes.
      report.equals('activity: paused while in use', seen.versions.filter((v) => v.spec?.paused === true).length, 'pauses', 0);
    } finally {
      await service.stop();
    }
  } finally {
    await controller.stop();
    await cluster.stop();
    await plane.stop();
  }
}
