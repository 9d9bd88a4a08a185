// Sends a kind's idle-suspend patch: one JSON merge patch, tied to the object's UID and locked on the
// resourceVersion it was decided on (the patch carries both), under its own field manager, so the
// audit log and managedFields tell suspensions from resumes and activity records. No retries: a 409 is
// a changed object, decided again at the next sweep.
import { CustomObjectsApi, KubeConfig, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import type { SuspendWriter } from './suspender.ts';

const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** Who wrote an idle suspension. */
export const IDLE_FIELD_MANAGER = 'sandbox-extproc-idle';

export function kubernetesSuspendWriter(kubeConfig: KubeConfig): SuspendWriter {
  const api = kubeConfig.makeApiClient(CustomObjectsApi);
  return async (route, now) => {
    const kind = route.kind;
    if (kind?.idleSuspendPatch === undefined) throw new Error(`sandbox ${route.id} has no kind that suspends idle sandboxes`);
    const { group, version, plural } = kind;
    try {
      await api.patchNamespacedCustomObject(
        {
          group,
          version,
          plural,
          namespace: route.namespace,
          name: route.name,
          body: kind.idleSuspendPatch(route, now),
          fieldManager: IDLE_FIELD_MANAGER,
        },
        mergePatch,
      );
      return 'applied';
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      // 409: it changed since (a newer record, a resume); 422: its UID no longer matches (recreated).
      if (code === 409 || code === 422) return 'superseded';
      throw error;
    }
  };
}
