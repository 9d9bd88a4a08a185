// The Sandbox CRD families the service knows, by config name.
import type { SandboxKind } from './kind.ts';
import { createOpenKruiseKind } from './openkruise.ts';

export interface KindOptions {
  /** Least pause timeout a wake or activity sets, in seconds. */
  readonly pauseFloorSeconds?: number;
}

const KINDS: Record<string, (options: KindOptions) => SandboxKind> = { openkruise: createOpenKruiseKind };

/** A new instance of the named kind (each owns its caches; make one per process and share it). */
export function sandboxKind(name: string, options: KindOptions = {}): SandboxKind {
  const create = KINDS[name];
  if (create === undefined) throw new Error(`unknown sandbox kind ${JSON.stringify(name)}`);
  return create(options);
}
