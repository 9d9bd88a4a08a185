// The README's "Install with Helm" section, read as a user would follow it: its `helm install` commands
// and its Envoy snippets, so the container suite runs exactly what the README tells users to run.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { REPO_ROOT } from './tools.ts';

export interface CodeBlock {
  readonly lang: string;
  readonly text: string;
  /** The prose line just before the block. */
  readonly intro: string;
}

export function helmSection(readme = readFileSync(`${REPO_ROOT}README.md`, 'utf8')): CodeBlock[] {
  const start = readme.indexOf('\n## Install with Helm');
  if (start < 0) throw new Error('README: no "## Install with Helm" section');
  const end = readme.indexOf('\n## ', start + 1);
  const section = readme.slice(start, end < 0 ? undefined : end);
  const blocks: CodeBlock[] = [];
  for (const match of section.matchAll(/([^\n]*)\n\n?```(\w*)\n([\s\S]*?)\n```/g)) {
    blocks.push({ intro: match[1] as string, lang: match[2] as string, text: match[3] as string });
  }
  return blocks;
}

/** Splits a shell command into words: backslash-newline continuations, single and double quotes. */
export function shellWords(command: string): string[] {
  const words: string[] = [];
  let word = '';
  let quote: string | undefined;
  let inWord = false;
  const text = command.replace(/\\\n/g, ' ');
  for (const ch of text) {
    if (quote !== undefined) {
      if (ch === quote) quote = undefined;
      else word += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += ch;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/** The README's `helm install` commands, as argument lists (without `helm`), in order. */
export function helmInstallCommands(): string[][] {
  return helmSection()
    .filter((b) => b.lang === 'sh')
    .flatMap((b) => b.text.split(/\n(?=helm )/))
    .map((command) => shellWords(command))
    .filter((words) => words[0] === 'helm' && words[1] === 'install')
    .map((words) => words.slice(1));
}

/** The README's `docker build` command that makes the image, as arguments after `docker`. */
export function dockerBuildCommand(): string[] {
  const command = helmSection()
    .filter((b) => b.lang === 'sh')
    .flatMap((b) => b.text.split('\n'))
    .map((line) => shellWords(line))
    .find((words) => words[0] === 'docker' && words[1] === 'build');
  if (command === undefined) throw new Error('README: no `docker build` command in "Install with Helm"');
  return command.slice(1);
}

/** The YAML snippets of the section, parsed, in order. */
export function yamlSnippets(): { intro: string; value: Record<string, unknown> }[] {
  return helmSection()
    .filter((b) => b.lang === 'yaml')
    .map((b) => ({ intro: b.intro, value: parseYaml(b.text) as Record<string, unknown> }));
}
