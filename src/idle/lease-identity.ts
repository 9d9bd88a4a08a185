// Who this replica is in the idle suspender's Lease, and where the Lease lives.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

/** The namespace a pod's ServiceAccount token is mounted for: the service's own, in a cluster. */
const SERVICE_ACCOUNT_NAMESPACE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** The Lease's namespace: as configured, else the service's own, else `default` (outside a cluster). */
export function leaseNamespace(configured: string, file = SERVICE_ACCOUNT_NAMESPACE): string {
  if (configured !== '') return configured;
  try {
    return readFileSync(file, 'utf8').trim() || 'default';
  } catch {
    return 'default';
  }
}

/** Unique per process: the pod's name (the hostname) and a random part, as client-go's examples do. */
export function leaseIdentity(): string {
  return `${hostname()}_${randomUUID()}`;
}
