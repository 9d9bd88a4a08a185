import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isValidSandboxId } from '../../../src/identification/identify.ts';
import { RouteRegistry } from '../../../src/routes/registry.ts';
import { createAgentSandboxKind } from '../../../src/sandbox-kinds/agent-sandbox.ts';
import { chooseVersion } from '../../../src/sandbox-kinds/kind.ts';
import { createOpenKruiseKind } from '../../../src/sandbox-kinds/openkruise.ts';

type Obj = Record<string, unknown>;
const condition = (type: string, status: string, reason: string) => ({
  type,
  status,
  reason,
  message: '',
  lastTransitionTime: '2026-11-21T10:00:00Z',
});
const ready = condition('Ready', 'True', 'DependenciesReady');

/** A running v1beta1 Sandbox as agent-sandbox's controller writes it. */
function sandbox(over: { meta?: Obj; spec?: Obj; status?: Obj } = {}): Obj {
  return {
    metadata: { name: 'box', namespace: 'team', uid: 'u1', resourceVersion: '10', ...over.meta },
    spec: { podTemplate: { spec: { containers: [] } }, operatingMode: 'Running', ...over.spec },
    status: { podIPs: ['10.0.0.5', 'fd00::5'], conditions: [ready, condition('Suspended', 'False', 'NotSuspended')], ...over.status },
  };
}
const kind = createAgentSandboxKind();
const route = (o: unknown) => kind.toRoute(o);

describe('agent-sandbox Sandbox -> route', () => {
  it('reads a running sandbox: ID <namespace>/<name>, the primary pod IP, and its own kind', () => {
    expect(route(sandbox())).toMatchObject({
      id: 'team/box',
      uid: 'u1',
      namespace: 'team',
      name: 'box',
      state: 'running',
      podIP: '10.0.0.5',
      pauseRequested: false,
      pausing: false,
      wake: undefined,
      accessTokenDigest: undefined,
      kind,
    });
  });

  it('returns undefined for an object without uid, name or namespace', () => {
    expect(route({ metadata: { name: 'x', namespace: 'y' } })).toBeUndefined();
    expect(route(null)).toBeUndefined();
  });

  const suspended = {
    podIPs: undefined,
    conditions: [condition('Ready', 'False', 'SandboxSuspended'), condition('Suspended', 'True', 'PodTerminated')],
  };
  it.each([
    ['a deletion timestamp', { meta: { deletionTimestamp: '2026-01-01T00:00:00Z' } }, 'dead'],
    ['operatingMode Suspended (pod gone)', { spec: { operatingMode: 'Suspended' }, status: suspended }, 'paused'],
    [
      'operatingMode Suspended, pod still terminating (IP still reported)',
      { spec: { operatingMode: 'Suspended' }, status: { conditions: [condition('Ready', 'False', 'SandboxSuspended')] } },
      'paused',
    ],
    ['v1alpha1 replicas 0', { spec: { operatingMode: undefined, replicas: 0 }, status: suspended }, 'paused'],
    ['v1alpha1 replicas 1, Ready', { spec: { operatingMode: undefined, replicas: 1 } }, 'running'],
    ['asked to run, Ready=False SandboxSuspended (a resume not yet acted on)', { status: suspended }, 'paused'],
    [
      'asked to run, pod starting (DependenciesNotReady)',
      { status: { podIPs: undefined, conditions: [condition('Ready', 'False', 'DependenciesNotReady')] } },
      'creating',
    ],
    ['no conditions yet', { status: { podIPs: undefined, conditions: undefined } }, 'creating'],
    ['Ready=False ReconcilerError', { status: { conditions: [condition('Ready', 'False', 'ReconcilerError')] } }, 'creating'],
    ['Ready but no pod IP', { status: { podIPs: [] } }, 'creating'],
    [
      'expired (Ready=False SandboxExpired)',
      { status: { podIPs: undefined, conditions: [condition('Ready', 'False', 'SandboxExpired')] } },
      'dead',
    ],
    [
      'pod failed',
      { status: { conditions: [condition('Ready', 'False', 'PodFailed'), condition('Finished', 'True', 'PodFailed')] } },
      'dead',
    ],
    ['pod succeeded', { status: { conditions: [condition('Ready', 'False', 'PodSucceeded')] } }, 'dead'],
    ['two pods claim it', { status: { conditions: [condition('Ready', 'False', 'MultiplePods')] } }, 'dead'],
    ['an unclaimed warm-pool member, Ready', { meta: { labels: { 'agents.x-k8s.io/warm-pool-sandbox': 'abc123' } } }, 'available'],
    [
      'an unclaimed warm-pool member, starting',
      {
        meta: { labels: { 'agents.x-k8s.io/warm-pool-sandbox': 'abc123' } },
        status: { conditions: [condition('Ready', 'False', 'DependenciesNotReady')] },
      },
      'available',
    ],
    [
      'owned by a SandboxWarmPool (controller reference)',
      {
        meta: {
          ownerReferences: [
            { kind: 'SandboxWarmPool', name: 'pool', uid: 'p', apiVersion: 'extensions.agents.x-k8s.io/v1beta1', controller: true },
          ],
        },
      },
      'available',
    ],
    [
      'adopted by a claim (label removed, owned by the SandboxClaim)',
      {
        meta: {
          labels: { 'agents.x-k8s.io/launch-type': 'warm' },
          ownerReferences: [{ kind: 'SandboxClaim', name: 'c', uid: 'c', controller: true }],
        },
      },
      'running',
    ],
  ])('derives the state of %s', (_what, over, state) => {
    expect(route(sandbox(over as never))?.state).toBe(state);
  });

  it('does not count a Suspended condition lingering after a resume: Ready is the authority', () => {
    const resumed = sandbox({ status: { conditions: [ready, condition('Suspended', 'True', 'PodTerminated')] } });
    expect(route(resumed)).toMatchObject({ state: 'running', podIP: '10.0.0.5', pauseRequested: false });
  });

  it('marks a resume under way (asked to run, still reported suspended) as not pause-requested, so a wake sends no patch', () => {
    expect(route(sandbox({ status: suspended }))).toMatchObject({ state: 'paused', pauseRequested: false, podIP: '' });
    expect(route(sandbox({ spec: { operatingMode: 'Suspended' }, status: suspended }))).toMatchObject({ pauseRequested: true });
  });

  it('keeps no address for a sandbox that does not serve (a suspending pod may still report one)', () => {
    const suspending = sandbox({
      spec: { operatingMode: 'Suspended' },
      status: { conditions: [condition('Ready', 'False', 'SandboxSuspended')] },
    });
    expect(route(suspending)?.podIP).toBe('');
  });

  it('reads spec.shutdownTime', () => {
    expect(route(sandbox({ spec: { shutdownTime: '2026-11-21T11:00:00Z' } }))?.shutdownAt).toBe(Date.parse('2026-11-21T11:00:00Z'));
  });
});

describe('wake opt-in and access token (our annotations)', () => {
  const digest = createHash('sha256').update('s3cret').digest();
  const annotated = (annotations: Record<string, string>) => route(sandbox({ meta: { annotations } }));

  it('opts in with sandbox-extproc.io/wake-on-traffic: "true" only', () => {
    expect(annotated({ 'sandbox-extproc.io/wake-on-traffic': 'true' })?.wake).toEqual({ pauseAfterSeconds: 0, timeoutSeconds: 0 });
    expect(annotated({ 'sandbox-extproc.io/wake-on-traffic': 'yes' })?.wake).toBeUndefined();
    expect(annotated({})?.wake).toBeUndefined();
  });

  it('reads the per-sandbox wake deadline', () => {
    const r = annotated({ 'sandbox-extproc.io/wake-on-traffic': 'true', 'sandbox-extproc.io/wake-deadline-seconds': '7' });
    expect(r?.wake?.timeoutSeconds).toBe(7);
  });

  it('keeps the access-token digest (hex, either case), never a token', () => {
    const r = annotated({
      'sandbox-extproc.io/wake-on-traffic': 'true',
      'sandbox-extproc.io/access-token-sha256': digest.toString('hex').toUpperCase(),
    });
    expect(r?.accessTokenDigest?.equals(digest)).toBe(true);
  });

  it.each(['', 'not-hex', digest.toString('hex').slice(1), `${digest.toString('hex')}00`])(
    'does not let a sandbox with a malformed digest %j wake at all (never "no token needed")',
    (bad) => {
      const r = annotated({ 'sandbox-extproc.io/wake-on-traffic': 'true', 'sandbox-extproc.io/access-token-sha256': bad });
      expect(r?.wake).toBeUndefined();
    },
  );

  it('shares one wake policy object between sandboxes with the same one', () => {
    const a = annotated({ 'sandbox-extproc.io/wake-on-traffic': 'true' });
    const b = route(sandbox({ meta: { uid: 'u2', name: 'other', annotations: { 'sandbox-extproc.io/wake-on-traffic': 'true' } } }));
    expect(a?.wake).toBe(b?.wake);
  });
});

describe('resume patch', () => {
  it('v1beta1: operatingMode Running, with the UID as a precondition', () => {
    const k = createAgentSandboxKind();
    expect(k.version).toBe('v1beta1');
    expect(k.resumePatch(k.toRoute(sandbox()) as never, new Date())).toEqual({
      metadata: { uid: 'u1' },
      spec: { operatingMode: 'Running' },
    });
  });

  it('v1alpha1 (where only that version is served): replicas 1', () => {
    const k = createAgentSandboxKind();
    k.useVersion('v1alpha1');
    expect(k.resumePatch(k.toRoute(sandbox()) as never, new Date())).toEqual({ metadata: { uid: 'u1' }, spec: { replicas: 1 } });
    expect(() => k.useVersion('v2')).toThrow(/no version/);
  });

  it('chooses v1beta1 when served, else v1alpha1, else nothing', () => {
    expect(chooseVersion(kind, ['v1alpha1', 'v1beta1'])).toBe('v1beta1');
    expect(chooseVersion(kind, ['v1alpha1'])).toBe('v1alpha1');
    expect(chooseVersion(kind, [])).toBeUndefined();
  });
});

describe('no activity record nobody reads', () => {
  it('writes nothing for a running, opted-in sandbox: agent-sandbox suspends nothing on its own', () => {
    const optedIn = kind.toRoute(sandbox({ meta: { annotations: { 'sandbox-extproc.io/wake-on-traffic': 'true' } } }));
    expect(optedIn?.state).toBe('running');
    expect(kind.activityTimer(optedIn as never)).toBeUndefined();
  });
});

describe('a pod that is going away is never served (resumed during its grace period)', () => {
  const suspended = (reason: string, ip = '10.0.0.5') =>
    sandbox({
      spec: { operatingMode: 'Suspended' },
      status: { podIPs: [ip], conditions: [condition('Suspended', 'False', reason), condition('Ready', 'False', 'SandboxSuspended')] },
    });
  const reusedDying = (ip = '10.0.0.5', rv = '12') =>
    sandbox({
      meta: { resourceVersion: rv },
      status: {
        podIPs: [ip],
        conditions: [condition('Suspended', 'False', 'NotSuspended'), condition('Ready', 'True', 'DependenciesReady')],
      },
    });

  it('remembers the terminating pod, and does not serve it when the controller reports it Ready again', () => {
    const terminating = kind.toRoute(suspended('PodTerminating'));
    expect(terminating).toMatchObject({ state: 'paused', drainingIP: '10.0.0.5', podIP: '' });
    const resumed = kind.toRoute(reusedDying(), terminating);
    expect(resumed).toMatchObject({ state: 'creating', podIP: '', drainingIP: '10.0.0.5', resuming: true });
    // Still the same pod on the next status write: still not served.
    expect(kind.toRoute(reusedDying('10.0.0.5', '13'), resumed)).toMatchObject({ state: 'creating', drainingIP: '10.0.0.5' });
  });

  it('keeps not serving it while the controller reports its address, first not Ready, then Ready (the order the real one writes)', () => {
    const terminating = kind.toRoute(suspended('PodTerminating'));
    // Resumed: operatingMode Running while the status still says PodTerminating / SandboxSuspended.
    const asked = kind.toRoute(
      sandbox({
        status: {
          podIPs: ['10.0.0.5'],
          conditions: [condition('Suspended', 'False', 'PodTerminating'), condition('Ready', 'False', 'SandboxSuspended')],
        },
      }),
      terminating,
    );
    expect(asked).toMatchObject({ state: 'paused', drainingIP: '10.0.0.5', resuming: true });
    expect(kind.toRoute(reusedDying(), asked)).toMatchObject({ state: 'creating', podIP: '', drainingIP: '10.0.0.5', resuming: true });
  });

  it('serves the new pod once the controller reports the old one gone (no address), or another address', () => {
    const terminating = kind.toRoute(suspended('PodTerminating'));
    const resumed = kind.toRoute(reusedDying(), terminating);
    const starting = kind.toRoute(
      sandbox({ status: { podIPs: [], conditions: [condition('Ready', 'False', 'DependenciesNotReady')] } }),
      resumed,
    );
    expect(starting).toMatchObject({ state: 'creating', drainingIP: '', resuming: true });
    // The new pod may well get the freed address back: it is served.
    expect(kind.toRoute(reusedDying('10.0.0.5', '14'), starting)).toMatchObject({ state: 'running', podIP: '10.0.0.5', drainingIP: '' });
    expect(kind.toRoute(reusedDying('10.0.0.9'), resumed)).toMatchObject({ state: 'running', podIP: '10.0.0.9', drainingIP: '' });
  });

  it('needs no history once the pod is gone (PodTerminated), nor for a sandbox never suspended', () => {
    const gone = kind.toRoute(
      sandbox({ spec: { operatingMode: 'Suspended' }, status: { conditions: [condition('Suspended', 'True', 'PodTerminated')] } }),
    );
    expect(gone?.drainingIP).toBe('');
    expect(kind.toRoute(reusedDying(), gone)).toMatchObject({ state: 'running', drainingIP: '' });
    expect(kind.toRoute(reusedDying())).toMatchObject({ state: 'running', resuming: false });
  });

  it('keeps the address reported while asked to suspend, and asks for that pod to be read before it serves it again', () => {
    const running = kind.toRoute(sandbox())!;
    expect(running.suspendedIP).toBe('');
    // Asked to suspend; the controller has not written since: the old status still reports the pod.
    const asked = kind.toRoute(sandbox({ spec: { operatingMode: 'Suspended' } }), running)!;
    expect(asked).toMatchObject({ state: 'paused', suspendedIP: '10.0.0.5' });
    const resumed = sandbox({ meta: { resourceVersion: '12' } });
    const again = kind.toRoute(resumed, asked)!;
    expect(again).toMatchObject({ state: 'running', podIP: '10.0.0.5', suspendedIP: '10.0.0.5' });
    expect(kind.podToConfirm!(resumed, again)).toBe('box');
    // The name the controller tracks: its pod-name annotation when set.
    const adopted = sandbox({ meta: { annotations: { 'agents.x-k8s.io/pod-name': 'pool-x1' } } });
    expect(kind.podToConfirm!(adopted, kind.toRoute(adopted, asked)!)).toBe('pool-x1');
    const blank = sandbox({ meta: { annotations: { 'agents.x-k8s.io/pod-name': '' } } });
    expect(kind.podToConfirm!(blank, kind.toRoute(blank, asked)!)).toBe('box');
    // v1alpha1's replicas 0 asks for the suspension the same way.
    expect(kind.toRoute(sandbox({ spec: { operatingMode: undefined, replicas: 0 } }), running)).toMatchObject({ suspendedIP: '10.0.0.5' });
  });

  it('reads no pod once the Sandbox reported no address (the pod gone), for another address, another object, or a route not serving', () => {
    const running = kind.toRoute(sandbox())!;
    const asked = kind.toRoute(sandbox({ spec: { operatingMode: 'Suspended' } }), running)!;
    const gone = kind.toRoute(
      sandbox({
        spec: { operatingMode: 'Suspended' },
        status: { podIPs: [], conditions: [condition('Suspended', 'True', 'PodTerminated')] },
      }),
      asked,
    )!;
    expect(gone.suspendedIP).toBe('');
    const starting = kind.toRoute(
      sandbox({ status: { podIPs: [], conditions: [condition('Ready', 'False', 'DependenciesNotReady')] } }),
      gone,
    )!;
    // The new pod, even at the same address: not the deleted one.
    const renewed = sandbox({ meta: { resourceVersion: '14' } });
    const served = kind.toRoute(renewed, starting)!;
    expect(served).toMatchObject({ state: 'running', suspendedIP: '' });
    expect(kind.podToConfirm!(renewed, served)).toBeUndefined();
    // Another address straight away: a new pod.
    const moved = sandbox({ status: { podIPs: ['10.0.0.9'], conditions: [ready] } });
    const elsewhere = kind.toRoute(moved, asked)!;
    expect(elsewhere).toMatchObject({ state: 'running', podIP: '10.0.0.9', suspendedIP: '' });
    expect(kind.podToConfirm!(moved, elsewhere)).toBeUndefined();
    // Another object's history; no history at all.
    expect(kind.toRoute(sandbox(), { ...asked, uid: 'other' })?.suspendedIP).toBe('');
    expect(kind.podToConfirm!(sandbox(), kind.toRoute(sandbox())!)).toBeUndefined();
    const creating = sandbox({ status: { conditions: [condition('Ready', 'False', 'DependenciesNotReady')] } });
    expect(kind.toRoute(creating)).toMatchObject({ state: 'creating', podIP: '', suspendedIP: '' });
    expect(kind.podToConfirm!(creating, kind.toRoute(creating)!)).toBeUndefined();
    // Suspect but not serving (asked to suspend, or reported not Ready): nothing to read yet.
    expect(kind.podToConfirm!(sandbox({ spec: { operatingMode: 'Suspended' } }), asked)).toBeUndefined();
    const notReady = sandbox({ status: { podIPs: ['10.0.0.5'], conditions: [condition('Ready', 'False', 'DependenciesNotReady')] } });
    const waiting = kind.toRoute(notReady, asked)!;
    expect(waiting).toMatchObject({ state: 'creating', suspendedIP: '10.0.0.5' });
    expect(kind.podToConfirm!(notReady, waiting)).toBeUndefined();
    // A suspect address that is not the one served (a route amended by the screen, say).
    expect(kind.podToConfirm!(sandbox(), { ...kind.toRoute(sandbox(), asked)!, podIP: '10.0.0.7' })).toBeUndefined();
  });

  it("ignores another object's history (a sandbox recreated under the same name)", () => {
    const terminating = kind.toRoute(suspended('PodTerminating'));
    expect(kind.toRoute(reusedDying(), { ...terminating!, uid: 'other' })).toMatchObject({ state: 'running' });
  });
});

describe('route IDs never collide across kinds', () => {
  const openkruise = createOpenKruiseKind();
  const dnsLabel = fc.stringMatching(/^[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?$/);
  const labelValue = fc.string({ maxLength: 40 });

  it("OpenKruise IDs never contain '/', agent-sandbox IDs always do, for any names and labels", () => {
    fc.assert(
      fc.property(dnsLabel, dnsLabel, labelValue, (namespace, name, label) => {
        const meta = { namespace, name, uid: 'u', labels: { 'agents.kruise.io/sandbox-id': label } };
        const ok = openkruise.toRoute({ metadata: meta, status: { phase: 'Running' } });
        const as = kind.toRoute({ metadata: meta, spec: {} });
        expect(ok?.id.includes('/')).toBe(false);
        expect(as?.id).toBe(`${namespace}/${name}`);
        // The E2B convention can never name an agent-sandbox route: its IDs have no '/'.
        expect(isValidSandboxId(as?.id as string)).toBe(false);
      }),
    );
  });

  it('the same namespace and name in both families are two routes, each served by its own ID', () => {
    const registry = new RouteRegistry();
    const ok = openkruise.toRoute({
      metadata: { namespace: 'team', name: 'box', uid: 'k1', resourceVersion: '1' },
      status: { phase: 'Running', podInfo: { podIP: '10.0.0.1' }, conditions: [{ type: 'Ready', status: 'True' }] },
    });
    const as = kind.toRoute(sandbox({ meta: { uid: 'x1' } }));
    registry.upsert(ok!);
    registry.upsert(as!);
    expect(registry.get('team--box')?.kind).toBe(openkruise);
    expect(registry.get('team/box')?.kind).toBe(kind);
    expect(registry.conflicts).toBe(0);
  });

  it("one kind's relist never removes another kind's routes", () => {
    const registry = new RouteRegistry();
    const ok = openkruise.toRoute({
      metadata: { namespace: 'team', name: 'box', uid: 'k1', resourceVersion: '1' },
      status: { phase: 'Running', podInfo: { podIP: '10.0.0.1' }, conditions: [{ type: 'Ready', status: 'True' }] },
    });
    registry.upsert(ok!);
    registry.resync('team', [kind.toRoute(sandbox({ meta: { uid: 'x1' } }))!], kind);
    registry.resync(undefined, [], kind);
    expect(registry.get('team--box')).toBe(ok);
    registry.resync(undefined, [], openkruise);
    expect(registry.get('team--box')).toBeUndefined();
  });
});

describe('idle suspension (sandbox-extproc.io/idle-timeout)', () => {
  const withDefault = createAgentSandboxKind({ idleTimeoutSeconds: 600, idleNamespaces: ['team'] });
  const noDefault = createAgentSandboxKind();
  const annotated = (annotations: Obj) =>
    sandbox({ meta: { annotations: { 'sandbox-extproc.io/wake-on-traffic': 'true', ...annotations } } });

  it("reads a Sandbox's own idle timeout, as a Go duration, and only for one that may be woken", () => {
    expect(noDefault.toRoute(annotated({ 'sandbox-extproc.io/idle-timeout': '10m' }))?.idleMs).toBe(600_000);
    expect(noDefault.toRoute(annotated({ 'sandbox-extproc.io/idle-timeout': '90s' }))?.idleMs).toBe(90_000);
    // Nothing would bring it back: never suspended for idleness.
    expect(noDefault.toRoute(sandbox({ meta: { annotations: { 'sandbox-extproc.io/idle-timeout': '10m' } } }))?.idleMs).toBe(0);
    expect(noDefault.toRoute(annotated({ 'sandbox-extproc.io/idle-timeout': 'soon' }))?.idleMs).toBe(0);
    expect(noDefault.toRoute(annotated({}))?.idleMs).toBe(0);
    // Below the floor: read as the floor, never as "at once".
    expect(noDefault.toRoute(annotated({ 'sandbox-extproc.io/idle-timeout': '1ms' }))?.idleMs).toBe(2_000);
  });

  it('applies the default to the namespaces it covers, and a Sandbox of its own overrides it', () => {
    expect(withDefault.toRoute(annotated({}))?.idleMs).toBe(600_000);
    expect(withDefault.toRoute(annotated({ 'sandbox-extproc.io/idle-timeout': '1m' }))?.idleMs).toBe(60_000);
    const elsewhere = sandbox({ meta: { namespace: 'other', annotations: { 'sandbox-extproc.io/wake-on-traffic': 'true' } } });
    expect(withDefault.toRoute(elsewhere)?.idleMs).toBe(0);
    expect(createAgentSandboxKind({ idleTimeoutSeconds: 60, idleNamespaces: ['*'] }).toRoute(elsewhere)?.idleMs).toBe(60_000);
  });

  it('keeps the record only for a running Sandbox with an idle timeout: due one timeout after its last use or its Ready', () => {
    const route = noDefault.toRoute(
      annotated({ 'sandbox-extproc.io/idle-timeout': '2m', 'sandbox-extproc.io/last-activity': '2026-11-21T10:05:00Z' }),
    );
    expect(route?.readySince).toBe(Date.parse('2026-11-21T10:00:00Z'));
    expect(noDefault.activityTimer(route as never)).toEqual({ deadline: Date.parse('2026-11-21T10:07:00Z'), timeoutMs: 120_000 });
    const fresh = noDefault.toRoute(annotated({ 'sandbox-extproc.io/idle-timeout': '2m' }));
    expect(noDefault.activityTimer(fresh as never)).toEqual({ deadline: Date.parse('2026-11-21T10:02:00Z'), timeoutMs: 120_000 });
    const suspended = noDefault.toRoute(
      sandbox({
        meta: { annotations: { 'sandbox-extproc.io/wake-on-traffic': 'true', 'sandbox-extproc.io/idle-timeout': '2m' } },
        spec: { operatingMode: 'Suspended' },
      }),
    );
    expect(noDefault.activityTimer(suspended as never)).toBeUndefined();
  });

  it("suspends in the served version's own field, locked on the version decided on, recording when", () => {
    const k = createAgentSandboxKind();
    const route = k.toRoute(annotated({ 'sandbox-extproc.io/idle-timeout': '2m' })) as never;
    const now = new Date('2026-11-21T11:00:00.400Z');
    expect(k.idleSuspendPatch?.(route, now)).toEqual({
      metadata: { uid: 'u1', resourceVersion: '10', annotations: { 'sandbox-extproc.io/idle-suspended-at': '2026-11-21T11:00:00Z' } },
      spec: { operatingMode: 'Suspended' },
    });
    k.useVersion('v1alpha1');
    expect(k.idleSuspendPatch?.(route, now)).toMatchObject({ spec: { replicas: 0 } });
    expect(k.toRoute(annotated({ 'sandbox-extproc.io/idle-suspended-at': '2026-11-21T11:00:00Z' }))?.idleSuspendedAt).toBe(
      Date.parse('2026-11-21T11:00:00Z'),
    );
  });
});
