// The Sandbox CRD families the service knows, by config name.
import type { SandboxKind } from './kind.ts';
import { openKruiseSandbox } from './openkruise.ts';

const KINDS: Record<string, SandboxKind> = { [openKruiseSandbox.name]: openKruiseSandbox };

export function sandboxKind(name: string): SandboxKind {
  const kind = KINDS[name];
  if (kind === undefined) throw new Error(`unknown sandbox kind ${JSON.stringify(name)}`);
  return kind;
}
