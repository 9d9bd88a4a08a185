// The real helm binary (built by scripts/provision.sh) run against the project's chart.
import { execFileSync } from 'node:child_process';
import { parseAllDocuments } from 'yaml';
import { REPO_ROOT, toolPath } from './tools.ts';

export const CHART = `${REPO_ROOT}charts/sandbox-extproc`;

/** Runs helm in the repository root (relative chart paths, as the README's commands use, resolve there). */
export function helm(args: readonly string[]): string {
  try {
    return execFileSync(toolPath('SBX_HELM'), args, { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const e = error as { stderr?: string; stdout?: string; message: string };
    throw new Error(`helm ${args.join(' ')} failed: ${e.stderr ?? ''}${e.stdout ?? ''}${e.message}`, { cause: error });
  }
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string };
  [field: string]: unknown;
}

/** Renders the chart with the given values (--set style) and returns its objects. */
export function renderChart(release: string, namespace: string, values: Record<string, string> = {}): KubeObject[] {
  const sets = Object.entries(values).flatMap(([k, v]) => ['--set', `${k}=${v}`]);
  return objectsOf(helm(['template', release, CHART, '--namespace', namespace, ...sets]));
}

/** The objects of a multi-document YAML stream (helm template's output), empty documents left out. */
export function objectsOf(text: string): KubeObject[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as KubeObject | null)
    .filter((o): o is KubeObject => o !== null);
}
