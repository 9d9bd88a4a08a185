// The Helm chart, checked by the real helm and the real API server: lint and render in both modes and
// several value sets, apply every rendered object (the API server validates it), then run the service
// as the chart's own ServiceAccount and prove it routes, wakes, and can do nothing else.
import { readFileSync } from 'node:fs';
import { CoreV1Api, CustomObjectsApi, KubeConfig, KubernetesObjectApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlPlane, RBAC_RULES_FILE, rbacRules } from '../support/controlplane.ts';
import { ExtProcClient } from '../support/extproc-client.ts';
import { CHART, helm, renderChart, type KubeObject } from '../support/helm.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { GROUP, PLURAL, SandboxController, VERSION } from '../support/sandbox-controller.ts';
import { startService } from '../support/service.ts';

const VALUE_SETS: Record<string, Record<string, string>> = {
  sidecar: {},
  standalone: { mode: 'standalone' },
  'watched namespaces': { 'watchNamespaces[0]': 'team-a', 'watchNamespaces[1]': 'team-b' },
  'autoscaled, tuned': {
    'autoscaling.enabled': 'true',
    'config.wakeTimeout': '90s',
    'config.domains': 'sandbox.example.com',
    'config.maxWaiters': '500',
    'podDisruptionBudget.enabled': 'false',
  },
};

let plane: ControlPlane;

beforeAll(async () => {
  plane = await ControlPlane.start();
});

afterAll(async () => {
  await plane?.stop();
});

describe('helm lint and template', () => {
  it.each(Object.entries(VALUE_SETS))('lints and renders with %s values', (_name, values) => {
    const sets = Object.entries(values).flatMap(([k, v]) => ['--set', `${k}=${v}`]);
    expect(helm(['lint', CHART, '--strict', ...sets])).toContain('0 chart(s) failed');
    expect(renderChart('rel', 'sandbox-system', values).length).toBeGreaterThan(3);
  });

  it('refuses bad values through values.schema.json', () => {
    expect(() => helm(['template', 'rel', CHART, '--set', 'mode=both'])).toThrow(/mode/);
    expect(() => helm(['template', 'rel', CHART, '--set', 'config.wakeTimout=9s'])).toThrow(/wakeTimout/);
    expect(() => helm(['template', 'rel', CHART, '--set', 'config.wakeTimeout=soon'])).toThrow(/wakeTimeout/);
    expect(() => helm(['template', 'rel', CHART, '--set', 'watchNamespaces[0]=Bad_NS'])).toThrow(/watchNamespaces/);
  });

  it('ships envoy/envoy.yaml with only its ports and addresses filled in', () => {
    const cm = renderChart('rel', 'sandbox-system').find((o) => o.kind === 'ConfigMap') as KubeObject & { data: Record<string, string> };
    const template = readFileSync(`${CHART}/../../envoy/envoy.yaml`, 'utf8');
    const rendered = cm.data['envoy.yaml'] as string;
    expect(rendered).not.toMatch(/\$\{[A-Z_]+\}/);
    const tokens = [...template.matchAll(/\$\{[A-Z_]+\}/g)].length;
    expect(tokens).toBeGreaterThan(5);
    expect(rendered.split('\n').length).toBe(template.split('\n').length);
  });

  it('takes its RBAC rules from the one rules file, those of the enabled Sandbox families only, with no wildcard', () => {
    expect(JSON.stringify(parseYaml(readFileSync(RBAC_RULES_FILE, 'utf8')))).not.toContain('*');
    const rulesOf = (values: Record<string, string> = {}) =>
      (renderChart('rel', 'sandbox-system', values).find((o) => o.kind === 'ClusterRole') as KubeObject & { rules: unknown }).rules;
    expect(rulesOf()).toEqual(rbacRules(['openkruise']));
    expect(rulesOf({ 'config.sandboxKind': 'agent-sandbox' })).toEqual(rbacRules(['agent-sandbox']));
    expect(rulesOf({ 'config.sandboxKind': 'openkruise\\,agent-sandbox' })).toEqual(rbacRules(['openkruise', 'agent-sandbox']));
    const namespaced = renderChart('rel', 'sandbox-system', VALUE_SETS['watched namespaces']);
    expect(namespaced.filter((o) => o.kind === 'Role').map((o) => o.metadata.namespace)).toEqual(['team-a', 'team-b']);
    expect(namespaced.some((o) => o.kind === 'ClusterRole')).toBe(false);
  });

  it('runs every container non-root, read-only, without privilege escalation or capabilities', () => {
    const deployment = renderChart('rel', 'sandbox-system').find((o) => o.kind === 'Deployment') as KubeObject & {
      spec: {
        template: {
          spec: { securityContext: { runAsNonRoot: boolean }; containers: { name: string; securityContext: Record<string, unknown> }[] };
        };
      };
    };
    const pod = deployment.spec.template.spec;
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.containers.map((c) => c.name)).toEqual(['sandbox-extproc', 'envoy']);
    for (const c of pod.containers) {
      expect(c.securityContext).toMatchObject({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      });
    }
  });
});

describe('on the real API server', () => {
  it.each(Object.entries(VALUE_SETS))('accepts every object rendered with %s values', async (name, values) => {
    const namespace = `chart-${name.replace(/[^a-z]+/g, '-')}`.replace(/-$/, '');
    await plane.ensureNamespace(namespace);
    for (const ns of values['watchNamespaces[0]'] ? ['team-a', 'team-b'] : []) await plane.ensureNamespace(ns);
    const api = KubernetesObjectApi.makeApiClient(plane.admin);
    const release = `r${Object.keys(VALUE_SETS).indexOf(name)}`;
    for (const object of renderChart(release, namespace, values)) {
      await expect(api.create(object as never), `${object.kind}/${object.metadata.name}`).resolves.toBeDefined();
    }
  });

  it("runs the service as the chart's ServiceAccount: it routes and wakes, and can do nothing else", async () => {
    const namespace = 'sandbox-system';
    const sandboxes = 'tenants';
    await plane.ensureNamespace(namespace);
    await plane.ensureNamespace(sandboxes);
    const api = KubernetesObjectApi.makeApiClient(plane.admin);
    for (const object of renderChart('edge', namespace, { 'watchNamespaces[0]': sandboxes })) await api.create(object as never);
    const kubeconfig = await plane.kubeconfigFor(namespace, 'edge-sandbox-extproc');

    const controller = new SandboxController(plane.admin, { resumeDelayMs: 100 });
    await controller.start();
    await controller.create({ namespace: sandboxes, name: 'live', podIP: '10.9.0.1' });
    await controller.create({ namespace: sandboxes, name: 'napping', podIP: '10.9.0.2', paused: true, wake: { by: 'policy' } });
    const service = await startService(['--kubeconfig', kubeconfig, '--namespaces', sandboxes]);
    const client = new ExtProcClient(`127.0.0.1:${service.listening.grpcPort}`);
    try {
      await waitForRoute(service.app.registry, `${sandboxes}--napping`, (r) => r?.state === 'paused');
      const ask = async (id: string, answers: number) =>
        (
          await client.exchange([{ request_headers: { headers: { headers: [{ key: 'e2b-sandbox-id', raw_value: Buffer.from(id) }] } } }], {
            closeAfter: answers,
          })
        ).responses;
      expect(JSON.stringify((await ask(`${sandboxes}--live`, 1))[0]?.dynamic_metadata)).toContain('10.9.0.1:49983');
      // A wake answers twice: the timer extension, then the forward.
      const woken = await ask(`${sandboxes}--napping`, 2);
      expect(JSON.stringify(woken[1]?.dynamic_metadata)).toContain('10.9.0.2:49983');

      const identity = new KubeConfig();
      identity.loadFromFile(kubeconfig);
      const custom = identity.makeApiClient(CustomObjectsApi);
      const core = identity.makeApiClient(CoreV1Api);
      const target = { group: GROUP, version: VERSION, plural: PLURAL, namespace: sandboxes };
      const merge = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);
      await expect(core.listNamespacedSecret({ namespace: sandboxes })).rejects.toMatchObject({ code: 403 });
      await expect(core.listNamespacedSecret({ namespace })).rejects.toMatchObject({ code: 403 });
      await expect(custom.listNamespacedCustomObject({ ...target, namespace: 'default' })).rejects.toMatchObject({ code: 403 });
      await expect(
        custom.createNamespacedCustomObject({
          ...target,
          body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'Sandbox', metadata: { name: 'x' } },
        }),
      ).rejects.toMatchObject({ code: 403 });
      await expect(custom.deleteNamespacedCustomObject({ ...target, name: 'live' })).rejects.toMatchObject({ code: 403 });
      await expect(
        custom.patchNamespacedCustomObjectStatus({ ...target, name: 'live', body: { status: { phase: 'Failed' } } }, merge),
      ).rejects.toMatchObject({ code: 403 });
    } finally {
      client.close();
      await service.stop();
      controller.stop();
    }
  });
});
