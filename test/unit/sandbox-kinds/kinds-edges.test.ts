// The edges of each Sandbox family's rules, and of the field readers they share: one case per rule
// that a one-token change would break (each was found by mutation testing, see docs/testing.md).
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createAgentSandboxKind } from '../../../src/sandbox-kinds/agent-sandbox.ts';
import { asObj, findCondition, Interner, objectParts } from '../../../src/sandbox-kinds/fields.ts';
import { sandboxKind } from '../../../src/sandbox-kinds/index.ts';
import { createOpenKruiseKind, parseGoDurationSeconds } from '../../../src/sandbox-kinds/openkruise.ts';
import type { Route } from '../../../src/routes/route.ts';
import { makeRoute } from '../../support/routes.ts';

type Obj = Record<string, unknown>;
const condition = (type: string, status: string, reason = '') => ({ type, status, reason });

describe('agent-sandbox: the rules, to their edges', () => {
  const kind = createAgentSandboxKind();
  /** A running v1beta1 Sandbox. */
  const sandbox = (over: { meta?: Obj; spec?: Obj; status?: Obj } = {}): Obj => ({
    metadata: { name: 'box', namespace: 'team', uid: 'u1', resourceVersion: '10', ...over.meta },
    spec: { operatingMode: 'Running', ...over.spec },
    status: { podIPs: ['10.0.0.5'], conditions: [condition('Ready', 'True', 'DependenciesReady')], ...over.status },
  });
  const route = (over: Parameters<typeof sandbox>[0] = {}) => kind.toRoute(sandbox(over));

  it('names its API: group agents.x-k8s.io, resource sandboxes', () => {
    expect([kind.group, kind.plural, kind.versions]).toEqual(['agents.x-k8s.io', 'sandboxes', ['v1beta1', 'v1alpha1']]);
  });

  it('reads a suspension asked for before the pod is gone (still Ready) as paused', () => {
    expect(route({ spec: { operatingMode: 'Suspended' } })).toMatchObject({ state: 'paused', pauseRequested: true, podIP: '' });
    expect(route({ spec: { operatingMode: undefined, replicas: 0 } })).toMatchObject({ state: 'paused', pauseRequested: true });
    expect(route({ spec: { operatingMode: undefined, replicas: 1 } })).toMatchObject({ state: 'running', pauseRequested: false });
  });

  it('reads a Finished condition as dead, whatever Ready says', () => {
    expect(route({ status: { conditions: [condition('Ready', 'True', 'DependenciesReady'), condition('Finished', 'True')] } })?.state).toBe(
      'dead',
    );
    expect(
      route({ status: { conditions: [condition('Ready', 'True', 'DependenciesReady'), condition('Finished', 'False')] } })?.state,
    ).toBe('running');
  });

  it('takes Ready=True as the authority: a terminal reason counts only on Ready=False', () => {
    expect(route({ status: { conditions: [condition('Ready', 'True', 'PodSucceeded')] } })?.state).toBe('running');
    expect(route({ status: { conditions: [condition('Ready', 'Unknown', 'SandboxExpired')] } })?.state).toBe('dead');
  });

  it('counts as a pool member only what a SandboxWarmPool controls, among any owners', () => {
    const owner = (kindName: string, controller: boolean) => ({ kind: kindName, name: 'o', uid: 'o', controller });
    expect(route({ meta: { ownerReferences: [owner('Deployment', false), owner('SandboxWarmPool', true)] } })?.state).toBe('available');
    expect(route({ meta: { ownerReferences: [owner('SandboxWarmPool', false)] } })?.state).toBe('running');
    expect(route({ meta: { ownerReferences: [owner('SandboxClaim', true)] } })?.state).toBe('running');
  });

  it('reads only a string as the primary pod IP, and none when there is no list', () => {
    expect(route({ status: { podIPs: [42] } })).toMatchObject({ state: 'creating', podIP: '' });
    expect(route({ status: { podIPs: undefined } })).toMatchObject({ state: 'creating', podIP: '' });
  });

  it("never asks for OpenKruise's traffic token (the JWT rule is OpenKruise's)", () => {
    expect(route({ meta: { annotations: { 'security.agents.kruise.io/enable-jwt-auth': 'true' } } })?.trafficAuth).toBe(false);
  });

  it('reads a deletion in progress, and an object without a resourceVersion', () => {
    expect(route({ meta: { deletionTimestamp: '2026-01-01T00:00:00Z' } })).toMatchObject({ deleting: true, state: 'dead' });
    expect(route()).toMatchObject({ deleting: false, resourceVersion: '10' });
    expect(route({ meta: { resourceVersion: undefined } })?.resourceVersion).toBe('');
  });
});

describe('agent-sandbox: a suspension and the resume after it, to their edges', () => {
  const kind = createAgentSandboxKind();
  const sandbox = (over: { meta?: Obj; spec?: Obj; status?: Obj } = {}): Obj => ({
    metadata: { name: 'box', namespace: 'team', uid: 'u1', resourceVersion: '10', ...over.meta },
    spec: { operatingMode: 'Running', ...over.spec },
    status: { podIPs: ['10.0.0.5'], conditions: [condition('Ready', 'True', 'DependenciesReady')], ...over.status },
  });
  const suspendedWith = (status: string, reason: string) =>
    sandbox({
      spec: { operatingMode: 'Suspended' },
      status: { conditions: [condition('Suspended', status, reason), condition('Ready', 'False', 'SandboxSuspended')] },
    });
  const starting = { podIPs: [], conditions: [condition('Ready', 'False', 'DependenciesNotReady')] };

  it('takes a pod as terminating only when asked to suspend, Suspended not True, and the reason PodTerminating', () => {
    expect(kind.toRoute(suspendedWith('False', 'PodTerminating'))?.drainingIP).toBe('10.0.0.5');
    expect(kind.toRoute(suspendedWith('True', 'PodTerminating'))?.drainingIP).toBe('');
    expect(kind.toRoute(suspendedWith('False', 'PodNotTerminated'))?.drainingIP).toBe('');
    // Asked to run again: with no history nothing was seen draining (the controller then reports the pod Ready).
    const asked = sandbox({
      status: { conditions: [condition('Suspended', 'False', 'PodTerminating'), condition('Ready', 'False', 'SandboxSuspended')] },
    });
    expect(kind.toRoute(asked)?.drainingIP).toBe('');
  });

  it('reads a resume as under way only when asked to run after a suspension, and not yet serving nor dead', () => {
    const gone = kind.toRoute(suspendedWith('True', 'PodTerminated'));
    expect(gone).toMatchObject({ state: 'paused', resuming: false, drainingIP: '' });
    // A sandbox that was never suspended is just starting.
    expect(kind.toRoute(sandbox({ status: starting }))).toMatchObject({ state: 'creating', resuming: false });
    // After a suspension: asked to run and starting -> resuming; serving, still suspended or deleted -> not.
    expect(kind.toRoute(sandbox({ meta: { resourceVersion: '11' }, status: starting }), gone)).toMatchObject({
      state: 'creating',
      resuming: true,
    });
    expect(kind.toRoute(sandbox({ meta: { resourceVersion: '11' } }), gone)).toMatchObject({ state: 'running', resuming: false });
    expect(kind.toRoute(suspendedWith('True', 'PodTerminated'), gone)).toMatchObject({ state: 'paused', resuming: false });
    const deleted = sandbox({ meta: { resourceVersion: '11', deletionTimestamp: '2026-11-21T10:00:00Z' }, status: starting });
    expect(kind.toRoute(deleted, gone)).toMatchObject({ state: 'dead', resuming: false });
  });

  it('counts a pod still draining as a resume under way, whatever state was seen last', () => {
    const terminating = kind.toRoute(suspendedWith('False', 'PodTerminating')) as Route;
    const seenStarting = { ...terminating, state: 'creating', resuming: false } as const;
    const stillThere = sandbox({
      meta: { resourceVersion: '11' },
      status: { conditions: [condition('Ready', 'False', 'DependenciesNotReady')] },
    });
    expect(kind.toRoute(stillThere, seenStarting)).toMatchObject({ state: 'creating', drainingIP: '10.0.0.5', resuming: true });
  });

  it("names the controller's Ready status and reason as the phase (for logs)", () => {
    expect(kind.toRoute(sandbox())?.phase).toBe('Ready=True/DependenciesReady');
    expect(kind.toRoute(sandbox({ status: { conditions: [] } }))?.phase).toBe('Ready=Unknown/');
    expect(kind.toRoute(sandbox({ status: { conditions: [{ type: 'Ready', status: 'False' }] } }))?.phase).toBe('Ready=False/');
  });

  it('records activity in its annotation, whole seconds, tied to the UID', () => {
    const route = kind.toRoute(sandbox()) as Route;
    expect(kind.activityPatch(route, new Date('2026-11-21T11:00:00.400Z'))).toEqual({
      metadata: { uid: 'u1', annotations: { 'sandbox-extproc.io/last-activity': '2026-11-21T11:00:00Z' } },
    });
  });

  it('is made by sandboxKind with the idle timeout and namespaces it is given', () => {
    const optedIn = sandbox({ meta: { annotations: { 'sandbox-extproc.io/wake-on-traffic': 'true' } } });
    expect(sandboxKind('agent-sandbox', { idleTimeoutSeconds: 600, idleNamespaces: ['team'] }).toRoute(optedIn)?.idleMs).toBe(600_000);
    expect(sandboxKind('agent-sandbox', { idleTimeoutSeconds: 600 }).toRoute(optedIn)?.idleMs).toBe(0);
    expect(sandboxKind('agent-sandbox', { idleNamespaces: ['team'] }).toRoute(optedIn)?.idleMs).toBe(0);
  });
});

describe('OpenKruise: the rules, to their edges', () => {
  const kind = createOpenKruiseKind();
  const sandbox = (over: { meta?: Obj; spec?: Obj; status?: Obj } = {}): Obj => ({
    metadata: { name: 'box', namespace: 'team', uid: 'u1', resourceVersion: '10', ...over.meta },
    spec: { paused: false, ...over.spec },
    status: { phase: 'Running', podInfo: { podIP: '10.0.0.5' }, conditions: [condition('Ready', 'True')], ...over.status },
  });
  const route = (over: Parameters<typeof sandbox>[0] = {}) => kind.toRoute(sandbox(over));

  it('names its API: group agents.kruise.io, version v1alpha1, resource sandboxes', () => {
    expect([kind.group, kind.version, kind.versions, kind.plural]).toEqual(['agents.kruise.io', 'v1alpha1', ['v1alpha1'], 'sandboxes']);
  });

  it('counts as a pool member anything a SandboxSet owns, among any owners', () => {
    expect(route({ meta: { ownerReferences: [{ kind: 'Deployment' }, { kind: 'SandboxSet' }] } })?.state).toBe('available');
    expect(route({ meta: { ownerReferences: [{ kind: 'Deployment' }] } })?.state).toBe('running');
  });

  it('reads a Ready pool member without a pod IP as still coming up', () => {
    expect(route({ meta: { ownerReferences: [{ kind: 'SandboxSet' }] }, status: { podInfo: { podIP: '' } } })?.state).toBe('creating');
  });

  it('reads spec.paused only when it is true, a deletion in progress, and a missing resourceVersion', () => {
    expect(route()).toMatchObject({ pauseRequested: false, deleting: false, resourceVersion: '10' });
    expect(route({ spec: { paused: 'true' } })?.pauseRequested).toBe(false);
    expect(route({ meta: { deletionTimestamp: '2026-01-01T00:00:00Z' } })).toMatchObject({ deleting: true, state: 'dead' });
    expect(route({ meta: { resourceVersion: undefined } })?.resourceVersion).toBe('');
  });

  it("keeps no address for a sandbox that is not running (paused, the controller still reports the old pod's)", () => {
    expect(route({ spec: { paused: true }, status: { phase: 'Paused' } })).toMatchObject({ state: 'paused', podIP: '' });
    expect(route({ status: { conditions: [] } })).toMatchObject({ state: 'creating', podIP: '' });
  });

  it('reads a resume as under way from the phase and RuntimeInitialized, never for a sandbox serving or dead', () => {
    const notReady = (phase: string, initialised?: string) => ({
      status: { phase, conditions: initialised === undefined ? [] : [condition('RuntimeInitialized', initialised)] },
    });
    expect(route(notReady('Running', 'False'))).toMatchObject({ state: 'creating', resuming: true });
    expect(route(notReady('Running', 'True'))).toMatchObject({ state: 'creating', resuming: false });
    expect(route(notReady('Running'))).toMatchObject({ state: 'creating', resuming: false });
    expect(route(notReady('Pending', 'False'))).toMatchObject({ state: 'creating', resuming: false });
    expect(route(notReady('Resuming'))).toMatchObject({ state: 'paused', resuming: true });
    // Serving already, or deleted: nothing under way.
    const serving = { status: { conditions: [condition('Ready', 'True'), condition('RuntimeInitialized', 'False')] } };
    expect(route(serving)).toMatchObject({ state: 'running', resuming: false });
    expect(route({ meta: { deletionTimestamp: '2026-01-01T00:00:00Z' }, status: { phase: 'Resuming' } })).toMatchObject({
      state: 'dead',
      resuming: false,
    });
  });

  it("names the controller's phase (none: empty), and never a draining pod (the controller waits for it)", () => {
    expect(route()).toMatchObject({ phase: 'Running', drainingIP: '', suspendedIP: '' });
    expect(route({ status: { phase: undefined } })?.phase).toBe('');
  });

  it('requires no token when the token annotations are empty', () => {
    expect(route({ meta: { annotations: { 'e2b.agents.kruise.io/envd-access-token': '' } } })?.accessTokenDigest).toBeUndefined();
    expect(route({ meta: { annotations: { 'agents.kruise.io/runtime-access-token': '' } } })?.accessTokenDigest).toBeUndefined();
    expect(route({ meta: { annotations: { 'agents.kruise.io/runtime-access-token': 't' } } })?.accessTokenDigest).toEqual(
      createHash('sha256').update('t').digest(),
    );
  });

  it("reads the legacy wake-timeout-seconds only when it is all digits (else upstream's 60 s)", () => {
    const unfloored = createOpenKruiseKind({ pauseFloorSeconds: 0 });
    const legacy = (timeout: string) =>
      unfloored.toRoute(
        sandbox({
          meta: { annotations: { 'agents.kruise.io/wake-on-traffic': 'true', 'agents.kruise.io/wake-timeout-seconds': timeout } },
        }),
      )?.wake?.pauseAfterSeconds;
    expect(legacy('30')).toBe(30);
    expect(legacy('30x')).toBe(60);
    expect(legacy('x30')).toBe(60);
  });

  it('parses Go durations with several digits after the point', () => {
    expect(parseGoDurationSeconds('1.25h')).toBe(4500);
    expect(parseGoDurationSeconds('12.75s')).toBe(12.75);
  });

  describe('activity: the pause timer it pushes', () => {
    const wake = { pauseAfterSeconds: 600, timeoutSeconds: 0 };
    const pauseAt = Date.parse('2026-11-21T10:00:00Z');

    it('is spec.pauseTime, with the pause timeout, for a running sandbox with both', () => {
      expect(kind.activityTimer(makeRoute({ wake, pauseAt }))).toEqual({ deadline: pauseAt, timeoutMs: 600_000 });
    });

    it('is none without a pauseTime, without a pause timeout, or when the sandbox is not running', () => {
      expect(kind.activityTimer(makeRoute({ wake }))).toBeUndefined();
      expect(kind.activityTimer(makeRoute({ wake: { pauseAfterSeconds: 0, timeoutSeconds: 0 }, pauseAt }))).toBeUndefined();
      expect(kind.activityTimer(makeRoute({ pauseAt }))).toBeUndefined();
      expect(kind.activityTimer(makeRoute({ wake, pauseAt, state: 'paused' }))).toBeUndefined();
    });

    it('is pushed to now + the pause timeout, tied to the UID', () => {
      const now = new Date('2026-11-21T10:00:00.250Z');
      expect(kind.activityPatch(makeRoute({ uid: 'u9', wake, pauseAt }), now)).toEqual({
        metadata: { uid: 'u9' },
        spec: { pauseTime: '2026-11-21T10:10:00Z' },
      });
    });
  });
});

describe('field readers', () => {
  it('asObj takes plain objects only', () => {
    const plain = { a: 1 };
    expect(asObj(plain)).toBe(plain);
    for (const value of [null, undefined, [], [1], 'x', 1, true]) expect(asObj(value)).toBeUndefined();
  });

  it('objectParts refuses an object with an empty UID', () => {
    expect(objectParts({ metadata: { name: 'a', namespace: 'b', uid: '' } })).toBeUndefined();
    expect(objectParts({ metadata: { name: 'a', namespace: 'b', uid: 'u' } })?.uid).toBe('u');
  });

  it('findCondition finds the condition of that type, not the first one', () => {
    const status = { conditions: [condition('Suspended', 'True'), condition('Ready', 'False', 'X')] };
    expect(findCondition(status, 'Ready')).toEqual(condition('Ready', 'False', 'X'));
    expect(findCondition(status, 'Finished')).toBeUndefined();
  });

  it('an Interner shares one value per key, and starts afresh past 4,096 keys', () => {
    const interner = new Interner<object>();
    const first = interner.get('k0', () => ({}));
    expect(interner.get('k0', () => ({}))).toBe(first);
    for (let i = 1; i < 4096; i += 1) interner.get(`k${i}`, () => ({}));
    expect(interner.get('k0', () => ({}))).toBe(first);
    interner.get('k4096', () => ({}));
    expect(interner.get('k0', () => ({}))).not.toBe(first);
  });

  it('sandboxKind names the kind it does not know', () => {
    expect(() => sandboxKind('nope')).toThrow('unknown sandbox kind "nope"');
    expect(sandboxKind('agent-sandbox').name).toBe('agent-sandbox');
  });
});
