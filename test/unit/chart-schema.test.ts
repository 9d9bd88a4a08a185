import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { chartSchema, CHART_MANAGED, CONFIG_ENV_PATH, configEnvText, SCHEMA_PATH } from '../../scripts/chart-schema.ts';
import { SETTINGS } from '../../src/config/settings.ts';

describe('values.schema.json', () => {
  it('is the one scripts/chart-schema.ts generates (node scripts/chart-schema.ts)', () => {
    expect(JSON.parse(readFileSync(SCHEMA_PATH, 'utf8'))).toEqual(chartSchema());
    expect(readFileSync(CONFIG_ENV_PATH, 'utf8')).toBe(configEnvText());
  });

  it('reaches every service setting: through config, or through the chart values that set it', () => {
    const config = (chartSchema()['properties'] as { config: { properties: Record<string, unknown> } }).config.properties;
    for (const key of Object.keys(SETTINGS)) expect(key in config || CHART_MANAGED.includes(key as never)).toBe(true);
  });
});
