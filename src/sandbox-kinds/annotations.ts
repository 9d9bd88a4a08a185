// Annotations in sandbox-extproc's own domain, read the same way for every Sandbox family.

/** Per-sandbox wake deadline in whole seconds: how long a request may wait for this sandbox to wake. */
export const WAKE_DEADLINE_ANNOTATION = 'sandbox-extproc.io/wake-deadline-seconds';

/** Reads the wake deadline annotation; 0 (use the global --wake-timeout) when absent or malformed. */
export function wakeDeadlineSeconds(annotations: Record<string, unknown> | undefined): number {
  const text = annotations?.[WAKE_DEADLINE_ANNOTATION];
  return typeof text === 'string' && /^[1-9][0-9]{0,5}$/.test(text) ? Number(text) : 0;
}
