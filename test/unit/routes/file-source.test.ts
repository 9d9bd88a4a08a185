import { describe, expect, it } from 'vitest';
import { parseRoutesFile } from '../../../src/routes/file-source.ts';

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
  ])('rejects %j saying where', (text, where) => {
    expect(() => parseRoutesFile(text, '1')).toThrow(where);
  });

  it('never lets a file route wake', () => {
    expect(parseRoutesFile('routes: [{ id: a, state: paused }]', '1')[0]?.wake).toBeUndefined();
  });
});
