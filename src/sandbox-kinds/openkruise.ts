// OpenKruise agents' Sandbox (agents.kruise.io/v1alpha1): field paths, the routing-state rules of the
// reference gateway, and the resume patch. See ../../../shared/reference.md section 1.
import { createHash } from 'node:crypto';
import type { Route, RouteState, WakePolicy } from '../routes/route.ts';
import type { SandboxKind } from './kind.ts';

const SANDBOX_ID_LABEL = 'agents.kruise.io/sandbox-id';
const WAKE_ANNOTATION = 'agents.kruise.io/wake-on-traffic';
const WAKE_TIMEOUT_ANNOTATION = 'agents.kruise.io/wake-timeout-seconds';
const TOKEN_ANNOTATION = 'agents.kruise.io/runtime-access-token';
/** OpenKruise never pauses a woken sandbox sooner than this after the wake. */
const PAUSE_FLOOR_SECONDS = 300;

type Obj = Record<string, unknown>;

const asObj = (v: unknown): Obj | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : undefined);
const asStr = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

function conditionTrue(status: Obj | undefined, type: string): boolean {
  const list = status?.['conditions'];
  if (!Array.isArray(list)) return false;
  return list.some((c) => asObj(c)?.['type'] === type && asObj(c)?.['status'] === 'True');
}

/** Parses a Go duration string ("120s", "2m", "1h30m", "1.5h") into seconds; undefined when malformed. */
export function parseGoDurationSeconds(text: string): number | undefined {
  const re = /([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)/gy;
  const unit: Record<string, number> = { ns: 1e-9, us: 1e-6, µs: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 };
  if (text === '0') return 0;
  let total = 0;
  let consumed = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    total += Number(m[1]) * (unit[m[2] as string] as number);
    consumed = re.lastIndex;
  }
  return consumed === text.length && consumed > 0 ? total : undefined;
}

// Many routes share a namespace and a wake policy: keep one copy of each, not one per route (at 100k
// routes that is megabytes). Both tables are small: one entry per namespace or distinct policy.
const namespaces = new Map<string, string>();
const policies = new Map<string, WakePolicy>();

function shared<T>(table: Map<string, T>, key: string, value: () => T): T {
  let held = table.get(key);
  if (held === undefined) {
    if (table.size >= 4096) table.clear();
    held = value();
    table.set(key, held);
  }
  return held;
}

function wakePolicy(spec: Obj | undefined, annotations: Obj | undefined): WakePolicy | undefined {
  const onTraffic = asObj(asObj(asObj(spec?.['autoPausePolicy'])?.['resume'])?.['onIngressTraffic']);
  const annotated = asStr(annotations?.[WAKE_ANNOTATION]) === 'true';
  if (onTraffic === undefined && !annotated) return undefined;
  const pauseTimeout = asStr(onTraffic?.['pauseTimeout']);
  const pauseSeconds = pauseTimeout === undefined ? 0 : (parseGoDurationSeconds(pauseTimeout) ?? 0);
  const timeoutText = asStr(annotations?.[WAKE_TIMEOUT_ANNOTATION]);
  const timeout = timeoutText !== undefined && /^[0-9]{1,6}$/.test(timeoutText) ? Number(timeoutText) : 0;
  const pauseAfterSeconds = pauseSeconds > 0 ? Math.max(Math.ceil(pauseSeconds), PAUSE_FLOOR_SECONDS) : 0;
  return shared(policies, `${pauseAfterSeconds}/${timeout}`, () => Object.freeze({ pauseAfterSeconds, timeoutSeconds: timeout }));
}

/** The reference gateway's classification, in its order. */
export function deriveState(meta: Obj, spec: Obj | undefined, status: Obj | undefined, podIP: string): RouteState {
  if (asStr(meta['deletionTimestamp']) !== undefined) return 'dead';
  const phase = asStr(status?.['phase']) ?? '';
  if (phase === 'Pending' || phase === '') return 'creating';
  if (phase === 'Succeeded' || phase === 'Failed' || phase === 'Terminating') return 'dead';
  const ready = conditionTrue(status, 'Ready');
  const owners = meta['ownerReferences'];
  const pooled = Array.isArray(owners) && owners.some((o) => asObj(o)?.['kind'] === 'SandboxSet');
  let state: RouteState;
  if (pooled) state = ready ? 'available' : 'creating';
  else if (phase === 'Running') state = spec?.['paused'] === true ? 'paused' : ready ? 'running' : 'dead';
  else state = 'paused';
  // A sandbox that should serve but has no address yet is still coming up.
  if ((state === 'running' || state === 'available') && podIP === '') return 'creating';
  return state;
}

export const openKruiseSandbox: SandboxKind = {
  name: 'openkruise',
  group: 'agents.kruise.io',
  version: 'v1alpha1',
  plural: 'sandboxes',

  toRoute(object: unknown): Route | undefined {
    const obj = asObj(object);
    const meta = asObj(obj?.['metadata']);
    if (meta === undefined) return undefined;
    const name = asStr(meta['name']);
    const namespace = asStr(meta['namespace']);
    const uid = asStr(meta['uid']);
    if (name === undefined || namespace === undefined || uid === undefined) return undefined;
    const spec = asObj(obj?.['spec']);
    const status = asObj(obj?.['status']);
    const labels = asObj(meta['labels']);
    const annotations = asObj(meta['annotations']);
    const podIP = asStr(asObj(status?.['podInfo'])?.['podIP']) || asStr(status?.['sandboxIp']) || '';
    const phase = asStr(status?.['phase']);
    const shutdown = asStr(spec?.['shutdownTime']);
    const shutdownAt = shutdown === undefined ? undefined : Date.parse(shutdown);
    const token = asStr(annotations?.[TOKEN_ANNOTATION]);
    const pauseRequested = spec?.['paused'] === true;
    return {
      id: asStr(labels?.[SANDBOX_ID_LABEL]) || `${namespace}--${name}`,
      uid,
      namespace: shared(namespaces, namespace, () => namespace),
      name,
      resourceVersion: asStr(meta['resourceVersion']) ?? '',
      state: deriveState(meta, spec, status, podIP),
      podIP,
      pauseRequested,
      pausing: (phase === 'Running' && pauseRequested) || (phase === 'Paused' && !conditionTrue(status, 'SandboxPaused')),
      shutdownAt: shutdownAt !== undefined && Number.isFinite(shutdownAt) ? shutdownAt : undefined,
      deleting: asStr(meta['deletionTimestamp']) !== undefined,
      wake: wakePolicy(spec, annotations),
      accessTokenDigest: token === undefined || token === '' ? undefined : createHash('sha256').update(token).digest(),
    };
  },

  resumePatch(route: Route, now: Date): Record<string, unknown> {
    const spec: Record<string, unknown> = { paused: false };
    const after = route.wake?.pauseAfterSeconds ?? 0;
    if (after > 0) spec['pauseTime'] = new Date(now.getTime() + after * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
    return { spec };
  },
};
