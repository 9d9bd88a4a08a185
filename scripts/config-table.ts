// Prints the README's configuration table from the settings table (test/unit/docs.test.ts checks the
// README holds exactly these rows).
import { SETTINGS } from '../src/config/settings.ts';

export function configTableRows(): string[] {
  return Object.values(SETTINGS).map((s) => `| \`--${s.flag}\` | \`${s.env}\` | \`${s.default === '' ? '""' : s.default}\` | ${s.help} |`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log('| Flag | Environment variable | Default | Meaning |\n| --- | --- | --- | --- |');
  console.log(configTableRows().join('\n'));
}
