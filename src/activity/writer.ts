// Sends a kind's activity patch: one JSON merge patch, tied to the object's UID, no retries (the next
// activity writes again; a missed push only means the sandbox may pause a little early).
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { Route } from '../routes/route.ts';
import type { SandboxKind } from '../sandbox-kinds/kind.ts';
import type { ActivityWriter } from './tracker.ts';

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** Who wrote an activity record, told apart from resumes in managedFields and the audit log. */
export const ACTIVITY_FIELD_MANAGER = 'sandbox-extproc-activity';

export function kubernetesActivityWriter(kubeConfig: KubeConfig, kindOf: (route: Route) => SandboxKind): ActivityWriter {
  const api = kubeConfig.makeApiClient(CustomObjectsApi);
  return async (route, now) => {
    const kind = kindOf(route);
    const { group, version, plural } = kind;
    await api.patchNamespacedCustomObject(
      {
        group,
        version,
        plural,
        namespace: route.namespace,
        name: route.name,
        body: kind.activityPatch(route, now),
        fieldManager: ACTIVITY_FIELD_MANAGER,
      },
      mergePatch,
    );
  };
}
