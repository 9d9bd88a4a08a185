// The health answer agent-sandbox's router gives on its proxy port (GET /healthz): only to a request that
// names no sandbox, only on the configured path, with or without a query string.
import { describe, expect, it } from 'vitest';
import { decide, type DecideOptions } from '../../../src/core/decide.ts';
import { RouteRegistry } from '../../../src/routes/registry.ts';

const routes = new RouteRegistry();
routes.markReady();
const withHealth: DecideOptions = { wakeEnabled: true, unnamed: 'reject', healthPath: '/healthz' };
const at = (path: string | undefined, options: DecideOptions = withHealth) =>
  decide({ kind: 'none' }, routes, { now: 0, accessToken: undefined, path }, options);

describe('the health answer', () => {
  it('answers the health path itself, and with a query string', () => {
    expect(at('/healthz')).toEqual({ kind: 'health' });
    expect(at('/healthz?probe=1')).toEqual({ kind: 'health' });
  });

  it('leaves every other path to the unnamed-request rule', () => {
    for (const path of ['/healthzz', '/healthz/', '/x/healthz', '/', '/other', undefined]) {
      expect(at(path)).toEqual({ kind: 'reject', code: 'missing_sandbox' });
    }
    expect(at('/x/healthz', { ...withHealth, unnamed: 'pass' })).toEqual({ kind: 'pass' });
  });

  it('is off when no health path is configured', () => {
    expect(at('/healthz', { wakeEnabled: true, unnamed: 'reject' })).toEqual({ kind: 'reject', code: 'missing_sandbox' });
  });
});
