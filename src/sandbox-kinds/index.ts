// The Sandbox CRD families the service knows, by config name.
import type { SandboxKind } from './kind.ts';
import { createOpenKruiseKind } from './openkruise.ts';

const KINDS: Record<string, () => SandboxKind> = { openkruise: createOpenKruiseKind };

/** A new instance of the named kind (each owns its caches; make one per process and share it). */
export function sandboxKind(name: string): SandboxKind {
  const create = KINDS[name];
  if (create === undefined) throw new Error(`unknown sandbox kind ${JSON.stringify(name)}`);
  return create();
}
