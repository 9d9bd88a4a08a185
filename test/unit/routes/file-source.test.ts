import { describe, expect, it } from 'vitest';
import { parseRoutesFile as parse } from '../../../src/routes/file-source.ts';
import { UpstreamAddressPolicy } from '../../../src/routes/upstream-address.ts';

const parseRoutesFile = (text: string, version: string) => parse(text, version, new UpstreamAddressPolicy());

describe('parseRoutesFile', () => {
  it('reads YAML and JSON routes, running by default', () => {
    const yaml = parseRoutesFile('routes:\n  - id: a\n    podIP: 10.0.0.1\n  - { id: b, state: paused }\n', '3');
    expect(yaml.map((r) => [r.id, r.state, r.podIP, r.resourceVersion])).toEqual([
      ['a', 'running', '10.0.0.1', '3'],
      ['b', 'paused', '', '3'],
    ]);
    expect(parseRoutesFile('{"routes":[{"id":"c","podIP":"fd00::2"}]}', '1')[0]?.podIP).toBe('fd00::2');
  });

  it.each([
    ['', 'top-level "routes" list'],
    ['routes: {}', 'top-level "routes" list'],
    ['routes: [{ podIP: 10.0.0.1 }]', 'routes[0].id'],
    ['routes: [{ id: "a/b", podIP: 10.0.0.1 }]', 'routes[0].id'],
    ['routes: [{ id: a, podIP: 10.0.0.1 }, { id: a, podIP: 10.0.0.2 }]', 'listed twice'],
    ['routes: [{ id: a, podIP: my-host.local }]', 'routes[0].podIP'],
    ['routes: [{ id: a }]', 'a running route needs one'],
    ['routes: [{ id: a, podIP: 10.0.0.1, state: sleeping }]', 'routes[0].state'],
    ['routes: [{ id: a, podIP: 300.0.0.1 }]', 'routes[0].podIP'],
    ['routes: [{ id: a, podIP: 010.0.0.1 }]', 'is not an IP address'],
    ['routes: [{ id: a, podIP: "::1" }]', 'routes[0].podIP: ::1 may not be routed to: a loopback address'],
    ['routes: [{ id: a, podIP: 127.0.0.1 }]', 'a loopback address'],
    ['routes: [{ id: a, podIP: 169.254.169.254 }]', 'a link-local address'],
    ['routes: [{ id: a, podIP: 0.0.0.0 }]', 'an unspecified address'],
  ])('rejects %j saying where', (text, where) => {
    expect(() => parseRoutesFile(text, '1')).toThrow(where);
  });

  it('never lets a file route wake', () => {
    expect(parseRoutesFile('routes: [{ id: a, state: paused }]', '1')[0]?.wake).toBeUndefined();
  });

  it('keeps the UID of a route across reloads, and gives a route back after removal a fresh one', () => {
    const policy = new UpstreamAddressPolicy();
    const first = parse('routes: [{ id: a, podIP: 10.0.0.1 }]', '1', policy);
    const uids = new Map(first.map((r) => [r.id, r.uid]));
    const second = parse('routes: [{ id: a, podIP: 10.0.0.2 }, { id: b, podIP: 10.0.0.3 }]', '2', policy, uids);
    expect(second[0]?.uid).toBe(first[0]?.uid);
    expect(second[1]?.uid).not.toBe(first[0]?.uid);
    const third = parse('routes: [{ id: a, podIP: 10.0.0.2 }]', '3', policy, new Map());
    expect(third[0]?.uid).not.toBe(first[0]?.uid);
  });
});
