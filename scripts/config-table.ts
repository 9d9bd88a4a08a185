// The README's configuration table, made from the settings table. `--write` puts it in README.md
// between the config-table markers; test/unit/docs.test.ts checks the README holds exactly these rows.
import { readFileSync, writeFileSync } from 'node:fs';
import { envOf, SETTINGS } from '../src/config/settings.ts';

export function configTableRows(): string[] {
  return Object.values(SETTINGS).flatMap((s) => {
    const choices = s.parse.choices === undefined || s.parse.choices.length < 3 ? '' : ` One of: ${s.parse.choices.join(', ')}.`;
    return [
      `| \`--${s.flag}\` | \`${s.env}\` | \`${s.default === '' ? '""' : s.default}\` | ${s.help}${choices} |`,
      ...s.aliases.map((alias) => `| \`--${alias}\` | \`${envOf(alias)}\` | | alias of \`--${s.flag}\`, kept for existing installs |`),
    ];
  });
}

export function configTable(): string {
  return ['| Flag | Environment variable | Default | Meaning |', '| --- | --- | --- | --- |', ...configTableRows()].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (process.argv.includes('--write')) {
    const path = new URL('../README.md', import.meta.url);
    const readme = readFileSync(path, 'utf8');
    const next = readme.replace(/(<!-- config-table:start[^>]*-->\n)[\s\S]*?(<!-- config-table:end -->)/, `$1${configTable()}\n$2`);
    writeFileSync(path, next);
  } else {
    console.log(configTable());
  }
}
