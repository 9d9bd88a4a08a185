import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DASHBOARD_FILE, dashboardText } from '../../scripts/dashboard.ts';

describe('the Grafana dashboard the chart ships', () => {
  it('is the one scripts/dashboard.ts generates (node scripts/dashboard.ts --write)', () => {
    expect(readFileSync(DASHBOARD_FILE, 'utf8')).toBe(dashboardText());
  });
});
