import { getEventListeners } from 'node:events';
import { describe, expect, it, vi } from 'vitest';
import { isNewerVersion, RouteRegistry } from '../../../src/routes/registry.ts';
import type { Route } from '../../../src/routes/route.ts';
import { makeRoute } from '../../support/routes.ts';

describe('resourceVersion ordering', () => {
  it('compares numeric versions as integers', () => {
    expect(isNewerVersion('10', '9')).toBe(true);
    expect(isNewerVersion('9', '10')).toBe(false);
    expect(isNewerVersion('10', '10')).toBe(false);
    expect(isNewerVersion('123456789012345678901', '99')).toBe(true);
    expect(isNewerVersion('99', '123456789012345678901')).toBe(false);
  });

  it('compares as integers only when both versions are all digits', () => {
    // Shorter but not numeric: opaque, so different means newer.
    expect(isNewerVersion('1a', '99')).toBe(true);
    expect(isNewerVersion('99', '1a')).toBe(true);
    expect(isNewerVersion('a1', 'b1')).toBe(true);
    expect(isNewerVersion('1a', '1b')).toBe(true);
    expect(isNewerVersion('9', '10')).toBe(false);
    expect(isNewerVersion('-5', '10')).toBe(true);
    expect(isNewerVersion('10', 'a5')).toBe(true);
    expect(isNewerVersion('10', '1a')).toBe(true);
  });

  it('treats a different opaque version as newer', () => {
    expect(isNewerVersion('abc', 'abd')).toBe(true);
    expect(isNewerVersion('abc', 'abc')).toBe(false);
  });

  it('applies an update only when its resourceVersion is newer', () => {
    const registry = new RouteRegistry();
    expect(registry.upsert(makeRoute({ resourceVersion: '5', podIP: '10.0.0.5' }))).toBe(true);
    expect(registry.upsert(makeRoute({ resourceVersion: '4', podIP: '10.0.0.4' }))).toBe(false);
    expect(registry.upsert(makeRoute({ resourceVersion: '5', podIP: '10.0.0.9' }))).toBe(false);
    expect(registry.get('sbx')?.podIP).toBe('10.0.0.5');
    expect(registry.upsert(makeRoute({ resourceVersion: '6', podIP: '10.0.0.6' }))).toBe(true);
    expect(registry.get('sbx')?.podIP).toBe('10.0.0.6');
  });
});

describe('UID fencing', () => {
  // The fence remembers the 65,536 most recently deleted UIDs: a bound on memory, refreshed by use.
  const CAPACITY = 65_536;

  it('fences the last 65,536 deleted UIDs, dropping the oldest first', () => {
    const registry = new RouteRegistry();
    registry.remove('first');
    for (let i = 1; i < CAPACITY; i += 1) registry.remove(`other-${i}`);
    expect(registry.upsert(makeRoute({ uid: 'first', resourceVersion: '9' }))).toBe(false);
    registry.remove('one-more');
    expect(registry.upsert(makeRoute({ uid: 'first', resourceVersion: '9' }))).toBe(true);
    expect(registry.upsert(makeRoute({ uid: 'other-1', resourceVersion: '9' }))).toBe(false);
  });

  it('keeps a UID deleted again among the most recent', () => {
    const registry = new RouteRegistry();
    registry.remove('first');
    for (let i = 1; i < CAPACITY; i += 1) registry.remove(`other-${i}`);
    registry.remove('first');
    registry.remove('one-more');
    expect(registry.upsert(makeRoute({ uid: 'first', resourceVersion: '9' }))).toBe(false);
    expect(registry.upsert(makeRoute({ uid: 'other-1', resourceVersion: '9' }))).toBe(true);
  });

  it('never brings back a deleted object from a late event', () => {
    const registry = new RouteRegistry();
    registry.upsert(makeRoute({ uid: 'old', resourceVersion: '5' }));
    expect(registry.remove('old')).toBe(true);
    expect(registry.upsert(makeRoute({ uid: 'old', resourceVersion: '7', podIP: '10.0.0.7' }))).toBe(false);
    expect(registry.get('sbx')).toBeUndefined();
  });

  it('routes a sandbox recreated under the same name only to the new object', () => {
    const registry = new RouteRegistry();
    registry.upsert(makeRoute({ uid: 'old', resourceVersion: '5', podIP: '10.0.0.1' }));
    registry.remove('old');
    registry.upsert(makeRoute({ uid: 'new', resourceVersion: '8', podIP: '10.0.0.2' }));
    // A stale update of the old object, even with a newer version, cannot take the ID back.
    registry.upsert(makeRoute({ uid: 'old', resourceVersion: '9', podIP: '10.0.0.1' }));
    expect(registry.get('sbx')).toMatchObject({ uid: 'new', podIP: '10.0.0.2' });
  });

  it('a deletion of another object with the same ID does not remove the held one', () => {
    const registry = new RouteRegistry();
    registry.upsert(makeRoute({ uid: 'current', resourceVersion: '5' }));
    expect(registry.remove('other')).toBe(false);
    expect(registry.get('sbx')?.uid).toBe('current');
  });

  it('serves neither of two live objects with one ID until the other is seen deleted', () => {
    const registry = new RouteRegistry();
    registry.upsert(makeRoute({ uid: 'new', resourceVersion: '10' }));
    registry.upsert(makeRoute({ uid: 'old', resourceVersion: '3' }));
    expect(registry.get('sbx')).toBeUndefined();
    expect(registry.conflicted('sbx')).toBe(true);
    registry.remove('old');
    expect(registry.get('sbx')?.uid).toBe('new');
  });
});

// Regression guards for tenant isolation (issue #12): an ID follows its object, never last-writer-wins.
describe('sandbox IDs follow their object', () => {
  it('retires the old ID at once when an object changes ID (claim, recycle)', () => {
    const registry = new RouteRegistry();
    registry.upsert(makeRoute({ id: 'tenant-a', uid: 'pod-1', resourceVersion: '5', podIP: '10.0.0.1' }));
    registry.upsert(makeRoute({ id: 'ns--box', uid: 'pod-1', resourceVersion: '6', podIP: '10.0.0.1' }));
    expect(registry.get('tenant-a')).toBeUndefined();
    expect(registry.get('ns--box')?.uid).toBe('pod-1');
    expect(registry.size).toBe(1);
  });

  it('gives an ID passed from one object to another to the new one, once the first gave it up', () => {
    const registry = new RouteRegistry();
    registry.upsert(makeRoute({ id: 'tenant-a', uid: 'pod-1', resourceVersion: '5', podIP: '10.0.0.1' }));
    registry.upsert(makeRoute({ id: 'ns--one', uid: 'pod-1', resourceVersion: '6', podIP: '10.0.0.1' }));
    registry.upsert(makeRoute({ id: 'tenant-a', uid: 'pod-2', resourceVersion: '7', podIP: '10.0.0.2' }));
    expect(registry.get('tenant-a')?.podIP).toBe('10.0.0.2');
    expect(registry.conflicted('tenant-a')).toBe(false);
  });

  it('fails closed when two live objects claim one ID, whichever wrote last, and reports the claimants', () => {
    const conflicts: [string, string[]][] = [];
    const registry = new RouteRegistry({ onConflict: (id, claimants) => conflicts.push([id, claimants.map((r) => r.uid)]) });
    const seen: [string, string | undefined][] = [];
    registry.subscribe((id, r) => seen.push([id, r?.uid]));
    registry.upsert(makeRoute({ id: 'victim', uid: 'owner', resourceVersion: '5', podIP: '10.0.0.1' }));
    registry.upsert(makeRoute({ id: 'victim', uid: 'thief', resourceVersion: '9', podIP: '10.6.6.6' }));
    expect(registry.get('victim')).toBeUndefined();
    expect(registry.conflicted('victim')).toBe(true);
    expect(registry.conflicts).toBe(1);
    // Newer writes by either claimant change nothing.
    registry.upsert(makeRoute({ id: 'victim', uid: 'thief', resourceVersion: '12', podIP: '10.6.6.7' }));
    registry.upsert(makeRoute({ id: 'victim', uid: 'owner', resourceVersion: '13', podIP: '10.0.0.1' }));
    expect(registry.get('victim')).toBeUndefined();
    expect(conflicts[0]).toEqual(['victim', ['owner', 'thief']]);
    // The thief relabels (or is deleted): the owner is served again.
    registry.remove('thief');
    expect(registry.get('victim')).toMatchObject({ uid: 'owner', podIP: '10.0.0.1' });
    expect(registry.conflicts).toBe(0);
    expect(conflicts.at(-1)).toEqual(['victim', []]);
    expect(seen).toEqual([
      ['victim', 'owner'],
      ['victim', undefined],
      ['victim', 'owner'],
    ]);
    // Reported when it began and when it ended; not again for each write of a claimant.
    expect(conflicts).toHaveLength(2);
  });

  it('keeps a three-way conflict closed until a single claimant remains', () => {
    const conflicts: string[][] = [];
    const registry = new RouteRegistry({ onConflict: (_id, claimants) => conflicts.push(claimants.map((r) => r.uid)) });
    for (const [uid, rv] of [
      ['a', '1'],
      ['b', '2'],
      ['c', '3'],
    ] as const)
      registry.upsert(makeRoute({ id: 'x', uid, resourceVersion: rv }));
    registry.remove('a');
    expect(registry.get('x')).toBeUndefined();
    registry.upsert(makeRoute({ id: 'y', uid: 'b', resourceVersion: '4' }));
    expect(registry.get('x')?.uid).toBe('c');
    expect(registry.get('y')?.uid).toBe('b');
    // Each change of the claimants is reported, with who claims the ID now.
    expect(conflicts).toEqual([['a', 'b'], ['a', 'b', 'c'], ['b', 'c'], []]);
  });

  it('fails closed on the legacy <namespace>--<name> collision (a--b/c and a/b--c)', () => {
    const registry = new RouteRegistry();
    registry.upsert(makeRoute({ id: 'a--b--c', uid: 'one', namespace: 'a--b', name: 'c' }));
    registry.upsert(makeRoute({ id: 'a--b--c', uid: 'two', namespace: 'a', name: 'b--c' }));
    expect(registry.get('a--b--c')).toBeUndefined();
    expect(registry.conflicted('a--b--c')).toBe(true);
  });

  it('removes by UID: a deletion finds the object whatever ID it holds now', () => {
    const registry = new RouteRegistry();
    registry.upsert(makeRoute({ id: 'first', uid: 'u', resourceVersion: '1' }));
    registry.upsert(makeRoute({ id: 'second', uid: 'u', resourceVersion: '2' }));
    expect(registry.remove('u')).toBe(true);
    expect(registry.get('first')).toBeUndefined();
    expect(registry.get('second')).toBeUndefined();
    expect(registry.size).toBe(0);
  });

  it('a resync that finds an ID passed between objects never shows it claimed twice', () => {
    const conflicts: string[] = [];
    const registry = new RouteRegistry({ onConflict: (id) => conflicts.push(id) });
    registry.upsert(makeRoute({ id: 'x', uid: 'a', resourceVersion: '1', namespace: 'ns' }));
    registry.upsert(makeRoute({ id: 'y', uid: 'c', resourceVersion: '2', namespace: 'ns' }));
    // While the watch was away: a gave up x for z, b claimed x, c moved from y to x's old owner's... y->w.
    registry.resync('ns', [
      makeRoute({ id: 'x', uid: 'b', resourceVersion: '9', namespace: 'ns' }),
      makeRoute({ id: 'z', uid: 'a', resourceVersion: '8', namespace: 'ns' }),
      makeRoute({ id: 'w', uid: 'c', resourceVersion: '7', namespace: 'ns' }),
    ]);
    expect(conflicts).toEqual([]);
    expect([registry.get('x')?.uid, registry.get('z')?.uid, registry.get('w')?.uid, registry.get('y')]).toEqual(['b', 'a', 'c', undefined]);
  });

  it('a listener that throws neither stops the change nor other listeners', () => {
    const errors: unknown[] = [];
    const registry = new RouteRegistry({ onListenerError: (e) => errors.push(e) });
    const seen: string[] = [];
    registry.subscribe(() => {
      throw new Error('listener bug');
    });
    registry.subscribe((id) => seen.push(id));
    expect(registry.upsert(makeRoute())).toBe(true);
    expect(registry.get('sbx')).toBeDefined();
    expect(seen).toEqual(['sbx']);
    expect(errors).toHaveLength(1);
  });
});

describe('resync', () => {
  it('a resync that lists what the table already holds changes nothing and tells nobody', () => {
    const registry = new RouteRegistry();
    const held = [makeRoute({ id: 'a', uid: 'ua', resourceVersion: '5' }), makeRoute({ id: 'b', uid: 'ub', resourceVersion: '6' })];
    for (const route of held) registry.upsert(route);
    const seen: string[] = [];
    registry.subscribe((id) => seen.push(id));
    registry.resync(
      undefined,
      held.map((r) => ({ ...r })),
    );
    expect(registry.get('a')?.uid).toBe('ua');
    expect(registry.get('b')?.uid).toBe('ub');
    expect(seen).toEqual([]);
    // A newer observation of the same ID replaces the route in one change, never through "gone".
    registry.resync(undefined, [{ ...(held[0] as Route), resourceVersion: '9', podIP: '10.0.0.9' }, held[1] as Route]);
    expect(registry.get('a')?.podIP).toBe('10.0.0.9');
    expect(seen).toEqual(['a']);
    seen.length = 0;
    // A new object in the list is simply added.
    registry.resync(undefined, [...held, makeRoute({ id: 'c', uid: 'uc', resourceVersion: '7' })]);
    expect(registry.get('c')?.uid).toBe('uc');
    expect(seen).toEqual(['c']);
  });

  it('removes routes of the scope the list no longer holds, keeps the rest, and leaves other scopes alone', () => {
    const registry = new RouteRegistry();
    registry.upsert(makeRoute({ id: 'a', uid: 'a', namespace: 'one' }));
    registry.upsert(makeRoute({ id: 'b', uid: 'b', namespace: 'one' }));
    registry.upsert(makeRoute({ id: 'c', uid: 'c', namespace: 'two' }));
    registry.resync('one', [makeRoute({ id: 'a', uid: 'a', namespace: 'one', resourceVersion: '2', podIP: '10.0.0.9' })]);
    expect(registry.get('a')?.podIP).toBe('10.0.0.9');
    expect(registry.get('b')).toBeUndefined();
    expect(registry.get('c')).toBeDefined();
  });

  it('a cluster-wide resync removes every unlisted route', () => {
    const registry = new RouteRegistry();
    registry.upsert(makeRoute({ id: 'a', uid: 'a', namespace: 'one' }));
    registry.upsert(makeRoute({ id: 'c', uid: 'c', namespace: 'two' }));
    registry.resync(undefined, []);
    expect(registry.size).toBe(0);
  });
});

describe('amending a held observation (a route held while its pod is read)', () => {
  it('replaces the held route by another reading of the same version, telling subscribers', () => {
    const registry = new RouteRegistry();
    const held = makeRoute({ resourceVersion: '7', state: 'creating', podIP: '' });
    registry.upsert(held);
    const seen: (Route | undefined)[] = [];
    registry.subscribe((_id, r) => seen.push(r));
    const serving = makeRoute({ resourceVersion: '7', state: 'running', podIP: '10.0.0.7' });
    expect(registry.amend(held, serving)).toBe(true);
    expect(registry.get('sbx')).toBe(serving);
    expect(registry.byUid('uid-1')).toBe(serving);
    expect(seen).toEqual([serving]);
  });

  it('changes nothing once the held route was replaced, nor for another object or ID', () => {
    const registry = new RouteRegistry();
    const held = makeRoute({ resourceVersion: '7', state: 'creating', podIP: '' });
    registry.upsert(held);
    expect(registry.amend(held, makeRoute({ uid: 'uid-2', resourceVersion: '7' }))).toBe(false);
    expect(registry.amend(held, makeRoute({ id: 'other', resourceVersion: '7' }))).toBe(false);
    expect(registry.get('sbx')).toBe(held);
    expect(registry.get('other')).toBeUndefined();
    expect(registry.byUid('uid-2')).toBeUndefined();
    const newer = makeRoute({ resourceVersion: '8', state: 'paused', podIP: '' });
    registry.upsert(newer);
    expect(registry.amend(held, makeRoute({ resourceVersion: '7' }))).toBe(false);
    expect(registry.get('sbx')).toBe(newer);
    registry.remove('uid-1');
    expect(registry.amend(newer, makeRoute({ resourceVersion: '8' }))).toBe(false);
    expect(registry.get('sbx')).toBeUndefined();
  });
});

describe('listeners and counts', () => {
  it('tells subscribers about every applied change, and nothing else', () => {
    const registry = new RouteRegistry();
    const seen: [string, string | undefined][] = [];
    const unsubscribe = registry.subscribe((id, r) => seen.push([id, r?.podIP]));
    registry.upsert(makeRoute({ resourceVersion: '2', podIP: '10.0.0.2' }));
    registry.upsert(makeRoute({ resourceVersion: '1', podIP: '10.0.0.1' }));
    registry.remove('uid-1');
    unsubscribe();
    registry.upsert(makeRoute({ uid: 'again', resourceVersion: '3' }));
    expect(seen).toEqual([
      ['sbx', '10.0.0.2'],
      ['sbx', undefined],
    ]);
  });

  it('counts routes by state', () => {
    const registry = new RouteRegistry();
    registry.upsert(makeRoute({ id: 'a', uid: 'a' }));
    registry.upsert(makeRoute({ id: 'b', uid: 'b', state: 'paused' }));
    expect(registry.countByState()).toEqual({ running: 1, paused: 1, creating: 0, available: 0, dead: 0 });
  });

  it('is not ready until marked', () => {
    const registry = new RouteRegistry();
    expect(registry.ready).toBe(false);
    registry.markReady();
    expect(registry.ready).toBe(true);
  });
});

describe('waiting for a newer observation', () => {
  it('resolves at once with a newer version already held, later with the next one, and undefined once gone', async () => {
    const registry = new RouteRegistry();
    registry.upsert(makeRoute({ uid: 'u', resourceVersion: '5' }));
    expect((await registry.awaitNewer('u', '4', new AbortController().signal))?.resourceVersion).toBe('5');
    const next = registry.awaitNewer('u', '5', new AbortController().signal);
    registry.upsert(makeRoute({ uid: 'u', resourceVersion: '6', podIP: '10.0.0.6' }));
    expect((await next)?.podIP).toBe('10.0.0.6');
    const gone = registry.awaitNewer('u', '6', new AbortController().signal);
    registry.remove('u');
    expect(await gone).toBeUndefined();
  });

  it('leaves no listener behind, on the table or on the signal, however it ends', async () => {
    const registry = new RouteRegistry();
    const unsubscribed = vi.fn();
    const subscribe = registry.subscribe.bind(registry);
    vi.spyOn(registry, 'subscribe').mockImplementation((listener) => {
      const unsubscribe = subscribe(listener);
      return () => (unsubscribed(), unsubscribe());
    });
    registry.upsert(makeRoute({ uid: 'u', resourceVersion: '5' }));
    const signals = [new AbortController(), new AbortController(), new AbortController()];
    const newer = registry.awaitNewer('u', '5', signals[0]!.signal);
    const aborted = registry.awaitNewer('u', '5', signals[1]!.signal);
    signals[1]!.abort();
    await aborted;
    registry.upsert(makeRoute({ uid: 'u', resourceVersion: '6' }));
    await newer;
    const gone = registry.awaitNewer('u', '6', signals[2]!.signal);
    registry.remove('u');
    await gone;
    expect(unsubscribed).toHaveBeenCalledTimes(3);
    for (const { signal } of signals) expect(getEventListeners(signal, 'abort')).toHaveLength(0);
  });

  it('gives up when its signal aborts', async () => {
    const registry = new RouteRegistry();
    registry.upsert(makeRoute({ uid: 'u', resourceVersion: '5' }));
    const abort = new AbortController();
    const waiting = registry.awaitNewer('u', '5', abort.signal);
    abort.abort();
    expect(await waiting).toBeUndefined();
  });
});
