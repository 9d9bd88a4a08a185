// The Sandbox CRD families the service knows, by config name.
import { createAgentSandboxKind } from './agent-sandbox.ts';
import type { SandboxKind, SandboxKindName } from './kind.ts';
import { createOpenKruiseKind } from './openkruise.ts';

export interface KindOptions {
  /** Least pause timeout a wake or activity sets, in seconds (kinds with a pause timer). */
  readonly pauseFloorSeconds?: number;
  /** agent-sandbox: the default idle timeout (seconds) of wake-opted-in Sandboxes in idleNamespaces. */
  readonly idleTimeoutSeconds?: number;
  readonly idleNamespaces?: readonly string[];
}

const KINDS: Record<SandboxKindName, (options: KindOptions) => SandboxKind> = {
  openkruise: createOpenKruiseKind,
  'agent-sandbox': createAgentSandboxKind,
};

/** A new instance of the named kind (each owns its caches; make one per process and share it). */
export function sandboxKind(name: string, options: KindOptions = {}): SandboxKind {
  const create = (KINDS as Record<string, ((options: KindOptions) => SandboxKind) | undefined>)[name];
  if (create === undefined) throw new Error(`unknown sandbox kind ${JSON.stringify(name)}`);
  return create(options);
}
