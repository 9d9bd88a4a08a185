// Prometheus metrics. Label values come from closed sets (decision outcomes, route states, error codes),
// never from request data, so cardinality stays fixed.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RouteState } from '../routes/route.ts';
import { BUILD } from '../version.ts';

export interface Metrics {
  readonly registry: Registry;
  readonly requests: Counter<'outcome'>;
  readonly decisionSeconds: Histogram;
  readonly streamsActive: Gauge;
  readonly watchRestarts: Counter<'reason'>;
  readonly watchEvents: Counter<'type'>;
  readonly podChecks: Counter<'outcome'>;
  readonly routeChanges: Counter;
  readonly wakes: Counter<'outcome'>;
  readonly wakePatchSeconds: Histogram;
  readonly wakeWaitSeconds: Histogram;
  readonly waiters: Gauge;
  readonly resumePatches: Counter<'outcome'>;
  readonly addressesRefused: Counter;
  readonly activityWrites: Counter<'outcome'>;
  readonly activityRemainingSeconds: Histogram;
  readonly accessLogEntries: Counter<'result'>;
  readonly suspensions: Counter<'reason' | 'outcome'>;
  readonly idleSandboxes: Gauge;
  readonly idleLeader: Gauge;
  readonly idleEnabled: Gauge;
  readonly idleFlaps: Counter;
  readonly idleSweepSeconds: Histogram;
  readonly grpcHandlerErrors: Counter<'method'>;
  readonly grpcLimited: Counter<'limit'>;
  readonly authzDecisions: Counter<'decision'>;
  readonly tokenReviews: Counter<'result'>;
}

export interface MetricSources {
  readonly routeCounts: () => Record<RouteState, number>;
  readonly routeConflicts?: () => number;
  /** Sandboxes whose pause timer this replica pushed within the last ten minutes. */
  readonly keptAwake?: () => number;
  /** Whether the service is ready (routes loaded, not shutting down). */
  readonly ready?: () => boolean;
  /** The configured bounds, exported so alerts need not repeat the configuration. */
  readonly limits?: { readonly maxStreams: number; readonly maxWaiters: number; readonly wakeTimeoutSeconds: number };
}

export function createMetrics(routeCounts: () => Record<RouteState, number>, sources: Omit<MetricSources, 'routeCounts'> = {}): Metrics {
  const { routeConflicts = () => 0, keptAwake = () => 0, ready = () => false, limits } = sources;
  const registry = new Registry();
  // prom-client's process and Node.js metrics under their standard names (process_cpu_seconds_total,
  // process_resident_memory_bytes, nodejs_*), which the dashboards and alerts people already have query.
  collectDefaultMetrics({ register: registry });
  const registers = [registry];
  new Gauge({
    name: 'sandbox_extproc_build_info',
    help: 'Always 1; the labels say which build runs: version, commit, and the Node.js version.',
    labelNames: ['version', 'commit', 'node'],
    registers,
  }).set({ version: BUILD.version, commit: BUILD.commit, node: BUILD.node }, 1);
  new Gauge({
    name: 'sandbox_extproc_routes',
    help: 'Routes in the table, by state.',
    labelNames: ['state'],
    registers,
    collect() {
      for (const [state, count] of Object.entries(routeCounts())) this.set({ state }, count);
    },
  });
  new Gauge({
    name: 'sandbox_extproc_route_conflicts',
    help: 'Sandbox IDs claimed by more than one object; requests for them are refused (sandbox_id_conflict).',
    registers,
    collect() {
      this.set(routeConflicts());
    },
  });
  new Gauge({
    name: 'sandbox_extproc_kept_awake_sandboxes',
    help: 'Sandboxes whose pause timer this replica pushed for activity within the last ten minutes.',
    registers,
    collect() {
      this.set(keptAwake());
    },
  });
  new Gauge({
    name: 'sandbox_extproc_ready',
    help: '1 when the service is ready (its routes are loaded and it is not shutting down), else 0; /readyz says why.',
    registers,
    collect() {
      this.set(ready() ? 1 : 0);
    },
  });
  if (limits !== undefined) {
    const constant = (name: string, help: string, value: number) => new Gauge({ name, help, registers }).set(value);
    constant(
      'sandbox_extproc_max_streams',
      'The --max-streams setting: concurrent ext_proc streams before 503 overloaded.',
      limits.maxStreams,
    );
    constant('sandbox_extproc_max_waiters', 'The --max-waiters setting: requests that may wait on wakes in total.', limits.maxWaiters);
    constant(
      'sandbox_extproc_wake_timeout_seconds',
      'The --wake-timeout setting: how long a request waits for its sandbox to wake.',
      limits.wakeTimeoutSeconds,
    );
  }
  return {
    registry,
    requests: new Counter({
      name: 'sandbox_extproc_requests_total',
      help: 'Requests decided, by outcome: forward, pass, wake, or the error code answered.',
      labelNames: ['outcome'],
      registers,
    }),
    decisionSeconds: new Histogram({
      name: 'sandbox_extproc_decision_duration_seconds',
      help: 'Time from request headers received to answer ready, excluding wake waits.',
      buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05],
      registers,
    }),
    streamsActive: new Gauge({
      name: 'sandbox_extproc_streams_active',
      help: 'ext_proc streams open now that sent their request (what --max-streams bounds).',
      registers,
    }),
    watchRestarts: new Counter({
      name: 'sandbox_extproc_watch_restarts_total',
      help: 'Kubernetes watch restarts, by reason: expired (410), error, idle, closed.',
      labelNames: ['reason'],
      registers,
    }),
    watchEvents: new Counter({
      name: 'sandbox_extproc_watch_events_total',
      help: 'Kubernetes watch events received, by type.',
      labelNames: ['type'],
      registers,
    }),
    podChecks: new Counter({
      name: 'sandbox_extproc_pod_checks_total',
      help: 'Pods read before a route may serve again at the address it had while asked to suspend (agent-sandbox), by outcome: serving, terminating, gone, other_address (the pod has another address than the Sandbox reports), forbidden (no get pods: served as reported), error (retried).',
      labelNames: ['outcome'],
      registers,
    }),
    routeChanges: new Counter({
      name: 'sandbox_extproc_route_changes_total',
      help: 'Changes applied to the route table (a route added, updated or removed), from watch events, lists or the routes file.',
      registers,
    }),
    wakes: new Counter({
      name: 'sandbox_extproc_wakes_total',
      help: 'Wakes (one per sandbox, however many requests wait on it), by outcome: woken, failed, timeout (every waiter timed out), abandoned (every client left).',
      labelNames: ['outcome'],
      registers,
    }),
    wakePatchSeconds: new Histogram({
      name: 'sandbox_extproc_wake_patch_duration_seconds',
      help: 'Time to send the resume patch, retries included.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    wakeWaitSeconds: new Histogram({
      name: 'sandbox_extproc_wake_wait_duration_seconds',
      help: 'Time from the resume patch to the watch showing the sandbox running.',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers,
    }),
    waiters: new Gauge({ name: 'sandbox_extproc_wake_waiters', help: 'Requests waiting for a sandbox to wake.', registers }),
    resumePatches: new Counter({
      name: 'sandbox_extproc_resume_patches_total',
      help: 'Resume patches sent, by outcome: applied, refused (403/404/422, webhook), replaced (the object was recreated or deleted), conflict (409: it changed since the decision), superseded (after a conflict, another writer had resumed it), retried (429/5xx), unreachable.',
      labelNames: ['outcome'],
      registers,
    }),
    activityWrites: new Counter({
      name: 'sandbox_extproc_activity_writes_total',
      help: 'Pause timers pushed because a sandbox was in use, by outcome: applied, superseded (the object changed since it was observed: decided again on the next activity), failed.',
      labelNames: ['outcome'],
      registers,
    }),
    activityRemainingSeconds: new Histogram({
      name: 'sandbox_extproc_activity_remaining_seconds',
      help: 'Time left on a sandbox pause timer when activity pushed it.',
      buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800],
      registers,
    }),
    accessLogEntries: new Counter({
      name: 'sandbox_extproc_access_log_entries_total',
      help: 'Envoy access log entries received for routed requests, by result: activity (credited to its sandbox), unknown (no such sandbox now).',
      labelNames: ['result'],
      registers,
    }),
    suspensions: new Counter({
      name: 'sandbox_extproc_suspensions_total',
      help: 'Sandboxes suspended by sandbox-extproc, by reason (idle: no traffic for its idle timeout) and outcome: applied, superseded (it changed since the decision: decided again at the next sweep), failed.',
      labelNames: ['reason', 'outcome'],
      registers,
    }),
    idleSandboxes: new Gauge({
      name: 'sandbox_extproc_idle_sandboxes',
      help: "Running sandboxes with an idle timeout that their activity record shows idle past it, at the idle suspender's last sweep (0 on replicas that do not hold the Lease).",
      registers,
    }),
    idleLeader: new Gauge({
      name: 'sandbox_extproc_idle_suspender_leader',
      help: "1 while this replica holds the idle suspender's Lease, else 0.",
      registers,
    }),
    idleEnabled: new Gauge({
      name: 'sandbox_extproc_idle_suspension_enabled',
      help: "1 when this replica campaigns for the idle suspender's Lease (idle suspension on, agent-sandbox served), else 0.",
      registers,
    }),
    idleFlaps: new Counter({
      name: 'sandbox_extproc_idle_flaps_total',
      help: 'Wakes of a sandbox within a minute of its idle suspension: its idle timeout is shorter than its pauses between uses.',
      registers,
    }),
    idleSweepSeconds: new Histogram({
      name: 'sandbox_extproc_idle_sweep_duration_seconds',
      help: 'CPU time of one idle suspender sweep over the route table.',
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
      registers,
    }),
    grpcHandlerErrors: new Counter({
      name: 'sandbox_extproc_grpc_handler_errors_total',
      help: 'gRPC calls ended INTERNAL because their handler threw (a bug: logged, the process goes on), by method path.',
      labelNames: ['method'],
      registers,
    }),
    grpcLimited: new Counter({
      name: 'sandbox_extproc_grpc_limited_total',
      help: 'gRPC connections or streams cut short by a transport bound, by limit: connections (grpc-max-connections), empty_streams (rapid-reset guard: connection closed), idle_streams (no first message in time, or too many waiting), buffers (a peer not taking its answers: stream reset), keepalive (PING unanswered: connection closed).',
      labelNames: ['limit'],
      registers,
    }),
    authzDecisions: new Counter({
      name: 'sandbox_extproc_authz_decisions_total',
      help: "agent-sandbox requests authorized by --agent-sandbox-authz-mode, by decision: allow, deny (its router's sandbox_router_authz_decisions_total).",
      labelNames: ['decision'],
      registers,
    }),
    tokenReviews: new Counter({
      name: 'sandbox_extproc_token_reviews_total',
      help: 'Bearer tokens checked in tokenreview mode, by result: authenticated, rejected, failed (the API did not answer), cached (a verdict remembered: no API call).',
      labelNames: ['result'],
      registers,
    }),
    addressesRefused: new Counter({
      name: 'sandbox_extproc_upstream_addresses_refused_total',
      help: 'Sandbox observations whose pod IP may not be routed to (loopback, link-local, outside --upstream-cidrs...).',
      registers,
    }),
  };
}
