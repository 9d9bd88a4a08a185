import { describe, expect, it } from 'vitest';
import { isNewerVersion, RouteRegistry } from '../../../src/routes/registry.ts';
import { makeRoute } from '../../support/routes.ts';

describe('resourceVersion ordering', () => {
  it('compares numeric versions as integers', () => {
    expect(isNewerVersion('10', '9')).toBe(true);
    expect(isNewerVersion('9', '10')).toBe(false);
    expect(isNewerVersion('10', '10')).toBe(false);
    expect(isNewerVersion('123456789012345678901', '99')).toBe(true);
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
  it('never brings back a deleted object from a late event', () => {
    const registry = new RouteRegistry();
    registry.upsert(makeRoute({ uid: 'old', resourceVersion: '5' }));
    expect(registry.remove('sbx', 'old')).toBe(true);
    expect(registry.upsert(makeRoute({ uid: 'old', resourceVersion: '7', podIP: '10.0.0.7' }))).toBe(false);
    expect(registry.get('sbx')).toBeUndefined();
  });

  it('routes a sandbox recreated under the same name only to the new object', () => {
    const registry = new RouteRegistry();
    registry.upsert(makeRoute({ uid: 'old', resourceVersion: '5', podIP: '10.0.0.1' }));
    registry.remove('sbx', 'old');
    registry.upsert(makeRoute({ uid: 'new', resourceVersion: '8', podIP: '10.0.0.2' }));
    // A stale update of the old object, even with a newer version, cannot take the ID back.
    registry.upsert(makeRoute({ uid: 'old', resourceVersion: '9', podIP: '10.0.0.1' }));
    expect(registry.get('sbx')).toMatchObject({ uid: 'new', podIP: '10.0.0.2' });
  });

  it('a deletion of another object with the same ID does not remove the held one', () => {
    const registry = new RouteRegistry();
    registry.upsert(makeRoute({ uid: 'current', resourceVersion: '5' }));
    expect(registry.remove('sbx', 'other')).toBe(false);
    expect(registry.get('sbx')?.uid).toBe('current');
  });

  it('rejects an older object recreated before the held one was seen deleted', () => {
    const registry = new RouteRegistry();
    registry.upsert(makeRoute({ uid: 'new', resourceVersion: '10' }));
    expect(registry.upsert(makeRoute({ uid: 'old', resourceVersion: '3' }))).toBe(false);
  });
});

describe('resync', () => {
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

describe('listeners and counts', () => {
  it('tells subscribers about every applied change, and nothing else', () => {
    const registry = new RouteRegistry();
    const seen: [string, string | undefined][] = [];
    const unsubscribe = registry.subscribe((id, r) => seen.push([id, r?.podIP]));
    registry.upsert(makeRoute({ resourceVersion: '2', podIP: '10.0.0.2' }));
    registry.upsert(makeRoute({ resourceVersion: '1', podIP: '10.0.0.1' }));
    registry.remove('sbx', 'uid-1');
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
