// What every Prometheus setup expects of a service (issue 28): its build in a build_info gauge, and the
// process metrics under their standard names, which existing dashboards and alerts query.
import { describe, expect, it } from 'vitest';
import { createMetrics } from '../../../src/observability/metrics.ts';

describe('metrics', () => {
  it('export sandbox_extproc_build_info{version,commit,node} = 1', async () => {
    const text = await createMetrics(() => ({}) as never).registry.metrics();
    expect(text).toContain(`sandbox_extproc_build_info{version="0.1.0",commit="unknown",node="${process.versions.node}"} 1`);
  });

  it('export the standard process and Node.js metrics unprefixed', async () => {
    const text = await createMetrics(() => ({}) as never).registry.metrics();
    for (const name of [
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'process_start_time_seconds',
      'nodejs_heap_size_used_bytes',
      'nodejs_eventloop_lag_p99_seconds',
    ]) {
      expect(text).toMatch(new RegExp(`^# TYPE ${name} `, 'm'));
    }
    expect(text).not.toContain('sandbox_extproc_process_');
    expect(text).not.toContain('sandbox_extproc_nodejs_');
  });
});
