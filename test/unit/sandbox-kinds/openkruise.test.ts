import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createOpenKruiseKind, parseGoDurationSeconds } from '../../../src/sandbox-kinds/openkruise.ts';

const openKruiseSandbox = createOpenKruiseKind();

type Obj = Record<string, unknown>;
const ready = (status: 'True' | 'False' = 'True') => [{ type: 'Ready', status }];

function sandbox(over: { meta?: Obj; spec?: Obj; status?: Obj } = {}): Obj {
  return {
    metadata: { name: 'box', namespace: 'team', uid: 'u1', resourceVersion: '10', ...over.meta },
    spec: { paused: false, ...over.spec },
    status: { phase: 'Running', podInfo: { podIP: '10.0.0.5' }, conditions: ready(), ...over.status },
  };
}
const route = (o: unknown) => openKruiseSandbox.toRoute(o);

describe('OpenKruise Sandbox -> route', () => {
  it('reads a running sandbox', () => {
    expect(route(sandbox())).toMatchObject({
      id: 'team--box',
      uid: 'u1',
      state: 'running',
      podIP: '10.0.0.5',
      resourceVersion: '10',
      wake: undefined,
    });
  });

  it('takes the ID from the sandbox-id label when present', () => {
    expect(route(sandbox({ meta: { labels: { 'agents.kruise.io/sandbox-id': 'abc123' } } }))?.id).toBe('abc123');
  });

  it('falls back to status.sandboxIp for the pod IP', () => {
    expect(route(sandbox({ status: { podInfo: undefined, sandboxIp: '10.9.9.9' } }))?.podIP).toBe('10.9.9.9');
  });

  it('returns undefined for an object without uid, name or namespace', () => {
    expect(route({ metadata: { name: 'x', namespace: 'y' } })).toBeUndefined();
    expect(route({})).toBeUndefined();
    expect(route(null)).toBeUndefined();
    expect(route('text')).toBeUndefined();
  });

  it.each([
    ['a deletion timestamp', { meta: { deletionTimestamp: '2026-01-01T00:00:00Z' } }, 'dead'],
    ['phase Pending', { status: { phase: 'Pending' } }, 'creating'],
    ['no phase yet', { status: { phase: undefined } }, 'creating'],
    ['phase Succeeded', { status: { phase: 'Succeeded' } }, 'dead'],
    ['phase Failed', { status: { phase: 'Failed' } }, 'dead'],
    ['phase Terminating', { status: { phase: 'Terminating' } }, 'dead'],
    ['Running with spec.paused', { spec: { paused: true } }, 'paused'],
    // The real controller's state after every resume (Ready only once the runtime is initialised).
    ['Running but not Ready', { status: { conditions: ready('False') } }, 'creating'],
    ['phase Paused', { status: { phase: 'Paused', podInfo: { podIP: '' } } }, 'paused'],
    ['phase Resuming', { status: { phase: 'Resuming', podInfo: { podIP: '' } } }, 'paused'],
    ['Running and Ready but no IP', { status: { podInfo: { podIP: '' } } }, 'creating'],
    ['owned by a SandboxSet and Ready', { meta: { ownerReferences: [{ kind: 'SandboxSet' }] } }, 'available'],
    ['owned by a SandboxSet, not Ready', { meta: { ownerReferences: [{ kind: 'SandboxSet' }] }, status: { conditions: [] } }, 'creating'],
  ])('derives the state of %s', (_what, over, state) => {
    expect(route(sandbox(over as never))?.state).toBe(state);
  });

  it('sees the pausing window: Running with spec.paused, or Paused without SandboxPaused=True', () => {
    expect(route(sandbox({ spec: { paused: true } }))?.pausing).toBe(true);
    expect(route(sandbox({ spec: { paused: true }, status: { phase: 'Paused', conditions: [] } }))?.pausing).toBe(true);
    const paused = route(
      sandbox({ spec: { paused: true }, status: { phase: 'Paused', conditions: [{ type: 'SandboxPaused', status: 'True' }] } }),
    );
    expect(paused?.pausing).toBe(false);
    expect(paused?.pauseRequested).toBe(true);
  });

  // The state the real controller shows while the pod is being deleted (reference.md section 1):
  // phase Paused, SandboxPaused present but not True. A resume then is deferred by the controller.
  it.each(['False', 'Unknown'])('reads phase Paused with SandboxPaused=%s as still pausing, not paused', (status) => {
    const pausing = route(
      sandbox({
        spec: { paused: true },
        status: {
          phase: 'Paused',
          conditions: [
            { type: 'Ready', status: 'False' },
            { type: 'SandboxPaused', status, reason: 'Pending' },
          ],
        },
      }),
    );
    expect(pausing).toMatchObject({ state: 'paused', pausing: true, pauseRequested: true });
  });

  it('reads the pausing window from phase Paused alone: a sandbox still Running with spec.paused false is not pausing', () => {
    expect(route(sandbox())?.pausing).toBe(false);
    expect(route(sandbox({ status: { phase: 'Resuming', conditions: [] } }))?.pausing).toBe(false);
  });

  it('reads shutdownTime and pauseTime', () => {
    const r = route(sandbox({ spec: { shutdownTime: '2030-01-01T00:00:00Z', pauseTime: '2029-01-01T00:00:00Z' } }));
    expect(r?.shutdownAt).toBe(Date.parse('2030-01-01T00:00:00Z'));
    expect(r?.pauseAt).toBe(Date.parse('2029-01-01T00:00:00Z'));
    expect(route(sandbox({ spec: { shutdownTime: 'garbage', pauseTime: 7 } }))).toMatchObject({
      shutdownAt: undefined,
      pauseAt: undefined,
    });
  });

  it('shares one copy of a namespace and of a wake policy across routes (memory at 100k routes)', () => {
    const optedIn = (name: string, timeout: string) =>
      route(
        sandbox({
          meta: {
            name,
            uid: name,
            namespace: ['te', 'am'].join(''),
            annotations: { 'agents.kruise.io/wake-on-traffic': 'true', 'sandbox-extproc.io/wake-deadline-seconds': timeout },
          },
        }),
      );
    const [a, b, c] = [optedIn('a', '30'), optedIn('b', '30'), optedIn('c', '60')];
    expect(a?.wake).toBe(b?.wake);
    expect(a?.wake).not.toBe(c?.wake);
    expect(c?.wake).toEqual({ pauseAfterSeconds: 300, timeoutSeconds: 60 });
    expect(Object.isFrozen(a?.wake)).toBe(true);
    expect(a?.namespace).toBe('team');
  });

  it('keeps a digest of the access token, never the token', () => {
    const r = route(sandbox({ meta: { annotations: { 'agents.kruise.io/runtime-access-token': 's3cret' } } }));
    expect(r?.accessTokenDigest?.length).toBe(32);
    expect(JSON.stringify(r)).not.toContain('s3cret');
  });
});

describe('wake opt-in', () => {
  it('opts in by autoPausePolicy.resume.onIngressTraffic, with the 300 s pause floor', () => {
    const policy = (pauseTimeout?: string) =>
      route(sandbox({ spec: { autoPausePolicy: { resume: { onIngressTraffic: pauseTimeout ? { pauseTimeout } : {} } } } }))?.wake;
    expect(policy()).toEqual({ pauseAfterSeconds: 0, timeoutSeconds: 0 });
    expect(policy('120s')).toEqual({ pauseAfterSeconds: 300, timeoutSeconds: 0 });
    expect(policy('1h')).toEqual({ pauseAfterSeconds: 3600, timeoutSeconds: 0 });
    expect(policy('nonsense')).toEqual({ pauseAfterSeconds: 0, timeoutSeconds: 0 });
  });

  it('opts in by the legacy annotation, reading wake-timeout-seconds as the re-arm pause timeout (default 60 s, floor 300 s)', () => {
    const annotated = (a: Obj) => route(sandbox({ meta: { annotations: a } }))?.wake;
    expect(annotated({ 'agents.kruise.io/wake-on-traffic': 'true' })).toEqual({ pauseAfterSeconds: 300, timeoutSeconds: 0 });
    expect(annotated({ 'agents.kruise.io/wake-on-traffic': 'true', 'agents.kruise.io/wake-timeout-seconds': '900' })).toEqual({
      pauseAfterSeconds: 900,
      timeoutSeconds: 0,
    });
    expect(annotated({ 'agents.kruise.io/wake-on-traffic': 'true', 'agents.kruise.io/wake-timeout-seconds': '-4' })).toEqual({
      pauseAfterSeconds: 300,
      timeoutSeconds: 0,
    });
    expect(annotated({ 'agents.kruise.io/wake-on-traffic': 'false' })).toBeUndefined();
  });

  it('takes a per-sandbox wake deadline from sandbox-extproc.io/wake-deadline-seconds', () => {
    const annotated = (deadline: string) =>
      route(
        sandbox({
          meta: { annotations: { 'agents.kruise.io/wake-on-traffic': 'true', 'sandbox-extproc.io/wake-deadline-seconds': deadline } },
        }),
      )?.wake?.timeoutSeconds;
    expect(annotated('45')).toBe(45);
    expect(annotated('0')).toBe(0);
    expect(annotated('1e3')).toBe(0);
  });
});

describe('a resume under way (what the real controller shows between spec.paused=false and Ready)', () => {
  const resumed = (phase: string, conditions: unknown[]) => route(sandbox({ spec: { paused: false }, status: { phase, conditions } }));

  it('is phase Paused asked to run, phase Resuming, and phase Running while RuntimeInitialized is not True', () => {
    expect(resumed('Paused', [{ type: 'SandboxPaused', status: 'True' }])).toMatchObject({
      state: 'paused',
      resuming: true,
      phase: 'Paused',
    });
    expect(resumed('Resuming', [{ type: 'SandboxResumed', status: 'False', reason: 'CreatePod' }])).toMatchObject({
      state: 'paused',
      resuming: true,
    });
    expect(
      resumed('Running', [
        { type: 'Ready', status: 'False' },
        { type: 'SandboxResumed', status: 'True', reason: 'ResumePod' },
        { type: 'RuntimeInitialized', status: 'False', reason: 'Pending' },
      ]),
    ).toMatchObject({ state: 'creating', resuming: true, phase: 'Running' });
  });

  it('is over once Ready, and is not a sandbox that was never paused', () => {
    const ready = [
      { type: 'Ready', status: 'True' },
      { type: 'RuntimeInitialized', status: 'True', reason: 'Succeeded' },
    ];
    expect(resumed('Running', ready)).toMatchObject({ state: 'running', resuming: false });
    expect(resumed('Running', [{ type: 'Ready', status: 'False' }])).toMatchObject({ state: 'creating', resuming: false });
    expect(route(sandbox({ status: { phase: 'Pending', conditions: [] } }))).toMatchObject({ state: 'creating', resuming: false });
  });

  it('is not a pause asked for again', () => {
    expect(route(sandbox({ spec: { paused: true }, status: { phase: 'Paused', conditions: [] } }))?.resuming).toBe(false);
  });
});

describe('activity patch (keep-awake)', () => {
  const kind = createOpenKruiseKind();
  const now = new Date('2026-11-21T10:00:00.700Z');
  const policy = { autoPausePolicy: { resume: { onIngressTraffic: { pauseTimeout: '10m' } } } };
  const patch = (spec: Record<string, unknown>) =>
    kind.activityPatch(kind.toRoute(sandbox({ spec: { ...policy, ...spec } })) as never, now);

  it('pushes pauseTime to now + the pause timeout, tied to the UID', () => {
    expect(patch({ pauseTime: '2026-11-21T10:02:00Z' })).toEqual({ metadata: { uid: 'u1' }, spec: { pauseTime: '2026-11-21T10:10:00Z' } });
  });

  it('moves shutdownTime by the same amount when both exist, so a sandbox in use is never deleted (E2B auto-pause)', () => {
    // E2B: shutdownTime = pauseTime + the paused retention (1 h here); the gap is kept.
    expect(patch({ pauseTime: '2026-11-21T10:02:00Z', shutdownTime: '2026-11-21T11:02:00Z' })).toEqual({
      metadata: { uid: 'u1' },
      spec: { pauseTime: '2026-11-21T10:10:00Z', shutdownTime: '2026-11-21T11:10:00Z' },
    });
  });
});

describe("resume patch (the reference gateway's, tied to the UID)", () => {
  const now = new Date('2026-11-21T10:00:00.123Z');
  const kind = createOpenKruiseKind();
  const patch = (over: Parameters<typeof sandbox>[0]) => kind.resumePatch(kind.toRoute(sandbox(over)) as never, now);
  const withPolicy = (pauseTimeout?: string) => ({
    autoPausePolicy: { resume: { onIngressTraffic: pauseTimeout ? { pauseTimeout } : {} } },
  });

  it("sets spec.paused=false with the object's UID as a precondition, and leaves timers alone when there are none", () => {
    expect(patch({ spec: withPolicy('10m') })).toEqual({ metadata: { uid: 'u1' }, spec: { paused: false } });
  });

  it('re-arms a pause timer that has passed: pauseTime = now + the pause timeout, at least 300 s', () => {
    expect(patch({ spec: { ...withPolicy('10m'), pauseTime: '2026-11-21T09:00:00Z' } })).toEqual({
      metadata: { uid: 'u1' },
      spec: { paused: false, pauseTime: '2026-11-21T10:10:00Z' },
    });
    expect(patch({ spec: { ...withPolicy('30s'), pauseTime: '2026-11-21T09:00:00Z' } })).toMatchObject({
      spec: { pauseTime: '2026-11-21T10:05:00Z' },
    });
  });

  it('clears the pause timer when no pause timeout is configured (else the controller would pause again at once)', () => {
    expect(patch({ spec: { ...withPolicy(), pauseTime: '2026-11-21T09:00:00Z' } })).toEqual({
      metadata: { uid: 'u1' },
      spec: { paused: false, pauseTime: null },
    });
  });

  it('pushes shutdownTime 100 years out when the sandbox has both timers (E2B auto-pause)', () => {
    expect(patch({ spec: { ...withPolicy('5m'), pauseTime: '2026-11-21T09:00:00Z', shutdownTime: '2026-11-21T11:00:00Z' } })).toEqual({
      metadata: { uid: 'u1' },
      spec: { paused: false, pauseTime: '2026-11-21T10:05:00Z', shutdownTime: '2126-11-21T10:00:00Z' },
    });
  });

  it("uses the legacy annotation's timeout for the re-arm", () => {
    expect(
      patch({
        meta: { annotations: { 'agents.kruise.io/wake-on-traffic': 'true', 'agents.kruise.io/wake-timeout-seconds': '600' } },
        spec: { pauseTime: '2026-11-21T09:00:00Z' },
      }),
    ).toMatchObject({ spec: { pauseTime: '2026-11-21T10:10:00Z' } });
  });
});

describe('Go durations', () => {
  it.each([
    ['120s', 120],
    ['2m', 120],
    ['1h30m', 5400],
    ['1.5h', 5400],
    ['500ms', 0.5],
    ['0', 0],
  ])('parses %s', (text, seconds) => expect(parseGoDurationSeconds(text)).toBeCloseTo(seconds));

  it.each(['', 's', '10', '10x', '1h garbage'])('rejects %j', (text) => expect(parseGoDurationSeconds(text)).toBeUndefined());
});

describe("OpenKruise access rules, read as upstream's route projection reads them", () => {
  const sha = (s: string) => createHash('sha256').update(s).digest();
  const annotated = (annotations: Record<string, string>) => route(sandbox({ meta: { annotations } }));

  it('falls back to the legacy e2b.agents.kruise.io/envd-access-token when the runtime token is absent or empty', () => {
    expect(annotated({ 'e2b.agents.kruise.io/envd-access-token': 'legacy' })?.accessTokenDigest).toEqual(sha('legacy'));
    expect(
      annotated({ 'agents.kruise.io/runtime-access-token': '', 'e2b.agents.kruise.io/envd-access-token': 'legacy' })?.accessTokenDigest,
    ).toEqual(sha('legacy'));
  });

  it('prefers agents.kruise.io/runtime-access-token over the legacy one', () => {
    expect(
      annotated({ 'agents.kruise.io/runtime-access-token': 'runtime', 'e2b.agents.kruise.io/envd-access-token': 'legacy' })
        ?.accessTokenDigest,
    ).toEqual(sha('runtime'));
    expect(annotated({})?.accessTokenDigest).toBeUndefined();
  });

  it('requires a traffic access token only for enable-jwt-auth exactly "true"', () => {
    expect(annotated({ 'security.agents.kruise.io/enable-jwt-auth': 'true' })?.trafficAuth).toBe(true);
    for (const value of ['True', '1', 'yes', ''])
      expect(annotated({ 'security.agents.kruise.io/enable-jwt-auth': value })?.trafficAuth).toBe(false);
    expect(annotated({})?.trafficAuth).toBe(false);
  });
});
