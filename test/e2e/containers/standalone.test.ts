// The README's standalone install with your own Envoy, run as a cluster would run it: the `helm install`
// rendered with the same flags plus the README's TLS values, the objects applied to a real
// kube-apiserver, replicas of the Deployment on the Docker engine answering for the headless Service's
// name, and an Envoy whose bootstrap is the README's snippets (ext_proc filter, access log, clusters, TLS
// transport socket) around a plain listener. Sandboxes are real containers.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { KubernetesObjectApi, type V1PodSpec } from '@kubernetes/client-node';
import { stringify as stringifyYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { signed } from '../../support/certs.ts';
import { applyInstall, renderInstall, startChartPod, type ChartInstall } from '../../support/chart-install.ts';
import { ContainerSandboxes } from '../../support/container-sandboxes.ts';
import { ControlPlane } from '../../support/controlplane.ts';
import { createNetwork, docker, runLabels, type DockerNetwork } from '../../support/docker.ts';
import { EdgeLoad } from '../../support/edge-load.ts';
import { httpGet } from '../../support/http.ts';
import { Pod } from '../../support/pod.ts';
import { helmInstallCommands, yamlSnippets } from '../../support/readme.ts';
import { ExtProcClient } from '../../support/extproc-client.ts';

const skip = inject('containerSkip');
type Yaml = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe.skipIf(skip !== '')('standalone mode with your own Envoy, as the README says', () => {
  const labels = runLabels(inject('runId'));
  const run = labels['sandbox-extproc.test-run'] as string;
  let network: DockerNetwork;
  let plane: ControlPlane;
  let install: ChartInstall;
  let sandboxes: ContainerSandboxes;
  let service: string;
  let tls: Record<string, string>;
  const replicas: Pod[] = [];
  let envoy: Pod;
  let edge: string;

  beforeAll(async () => {
    network = await createNetwork(`${run}-standalone`, labels);
    plane = await ControlPlane.start({ bindAddress: network.gateway });
    const command = helmInstallCommands().find((c) => c.includes('mode=standalone'));
    if (command === undefined) throw new Error('README: no standalone-mode helm install command');
    install = renderInstall(command, inject('registry'), ['--set', 'grpcTls.secretName=extproc-tls', '--set', 'grpcTls.clientCa=true']);
    // The gRPC Service (the other, -metrics, carries metrics and health).
    const svc = install.objects.find((o) => o.kind === 'Service' && !o.metadata.name.endsWith('-metrics')) as unknown as {
      metadata: { name: string };
      spec: { clusterIP?: string };
    };
    expect(svc.spec.clusterIP).toBe('None');
    service = `${svc.metadata.name}.${install.namespace}.svc`;
    // The Secret the README asks for: a certificate for the Service's name, the CA, and Envoy's client pair.
    signed(plane.dir, 'extproc', '/CN=sandbox-extproc', `subjectAltName=DNS:${service}\nextendedKeyUsage=serverAuth\n`);
    signed(plane.dir, 'envoy-client', '/CN=envoy', 'extendedKeyUsage=clientAuth\n');
    const pem = (name: string) => readFileSync(join(plane.dir, name), 'utf8');
    tls = { 'tls.crt': pem('extproc.crt'), 'tls.key': pem('extproc.key'), 'ca.crt': pem('ca.crt') };
    await applyInstall(plane, install);
    await KubernetesObjectApi.makeApiClient(plane.admin).create({
      apiVersion: 'v1',
      kind: 'Secret',
      type: 'kubernetes.io/tls',
      metadata: { name: 'extproc-tls', namespace: install.namespace },
      stringData: tls,
    } as never);
    sandboxes = new ContainerSandboxes(plane, network, labels);
    // The replicas start while the sandbox comes up: the service follows it on its watch.
    await Promise.all([
      (async () => {
        await sandboxes.start();
        await plane.ensureNamespace('tenants');
        await sandboxes.create({ namespace: 'tenants', name: 'alpha' });
      })(),
      (async () => {
        for (let i = 0; i < (install.deployment.spec?.replicas ?? 1); i++) replicas.push(await startReplica());
      })(),
    ]);
    envoy = await Pod.start({
      name: `${run}-envoy`,
      namespace: 'gateway',
      spec: envoyPodSpec(),
      network,
      labels,
      configMaps: { envoy: { 'envoy.yaml': stringifyYaml(readmeBootstrap()) } },
      secrets: {
        'envoy-tls': { 'ca.crt': tls['ca.crt'] as string, 'client.crt': pem('envoy-client.crt'), 'client.key': pem('envoy-client.key') },
      },
      ready: { envoy: /starting main dispatch loop/ },
    });
    edge = `http://${envoy.ip}:8080`;
    for (const replica of replicas) await healthy(replica);
  });

  afterAll(async () => {
    if (process.env['DEBUG_ENVOY_LOG'])
      (await import('node:fs')).writeFileSync(process.env['DEBUG_ENVOY_LOG'], envoy.logs('envoy').join('\n'));
    await sandboxes?.stop();
    for (const pod of [...replicas, ...(envoy ? [envoy] : [])]) await pod.remove();
    await plane?.stop();
    if (network) await docker(['network', 'rm', network.name]).catch(() => undefined);
  });

  let started = 0;
  const startReplica = () =>
    startChartPod(plane, install, {
      name: `${run}-extproc-${started++}`,
      network,
      labels,
      aliases: [service],
      secrets: { 'extproc-tls': tls },
    });

  /** Resolves when Envoy's health checker reports the replica healthy (its event log, on stdout). */
  const healthy = (replica: Pod) =>
    envoy.waitForLog(
      'envoy',
      new RegExp(
        `"health_checker_type":"GRPC".*"address":"${replica.ip.replaceAll('.', '\\.')}".*"add_healthy_event"|"add_healthy_event".*"address":"${replica.ip.replaceAll('.', '\\.')}"`,
      ),
      30_000,
    );

  /** The requests one replica has decided (its own metrics). */
  const decided = async (replica: Pod) => {
    const text = await (await fetch(`http://${replica.ip}:9003/metrics`)).text();
    return [...text.matchAll(/^sandbox_extproc_requests_total\{[^}]*\} (\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
  };

  it('routes through your Envoy, over mutual TLS, to every replica of the headless Service', async () => {
    const before = await Promise.all(replicas.map(decided));
    for (let i = 0; i < 40; i++) {
      const res = await httpGet(`${edge}/`, { 'e2b-sandbox-id': 'tenants--alpha' });
      expect(res.status, res.body).toBe(200);
      expect(res.json()['sandbox']).toBe('alpha');
    }
    const after = await Promise.all(replicas.map(decided));
    // Both replicas decided requests: Envoy's STRICT_DNS cluster sees each, not one cluster IP.
    after.forEach((n, i) => expect(n - (before[i] as number)).toBeGreaterThan(5));
    // The gRPC port speaks TLS only, and only to a client certificate signed by the Secret's CA.
    const plain = new ExtProcClient(`${replicas[0]?.ip}:9002`);
    // TLS with the right CA (the name is not checked: we dial an IP) but no client certificate.
    const noCert = new ExtProcClient(
      `${replicas[0]?.ip}:9002`,
      credentials.createSsl(Buffer.from(tls['ca.crt'] as string), null, null, { checkServerIdentity: () => undefined }),
    );
    try {
      for (const client of [plain, noCert]) {
        const { status } = await client.exchange(
          [{ request_headers: { headers: { headers: [{ key: 'e2b-sandbox-id', raw_value: Buffer.from('tenants--alpha') }] } } }],
          { closeAfter: 1 },
        );
        expect(status.code).toBe(14);
      }
    } finally {
      plain.close();
      noCert.close();
    }
  });

  it('replaces every replica under load with zero failed requests', async () => {
    const load = new EdgeLoad(() => edge, { 'e2b-sandbox-id': 'tenants--alpha' }).start(8);
    await load.flowing();
    for (let i = 0; i < 2; i++) {
      // The rollout: a new replica (maxSurge 1) until Envoy sees it healthy, then the old one deleted.
      const fresh = await startReplica();
      await healthy(fresh);
      const old = replicas.shift() as Pod;
      replicas.push(fresh);
      const codes = await old.terminate();
      expect(codes).toEqual({ 'sandbox-extproc': 0 });
      await old.remove();
    }
    const ok = load.ok;
    for (const replica of replicas) expect(await decided(replica)).toBeGreaterThan(0);
    const result = await load.stop();
    const failed = envoy.logs('envoy').filter((l) => l.startsWith('{"') && !l.includes('"status":200') && l.includes('"status"'));
    expect(failed.slice(0, 20)).toEqual([]);
    expect(result.failures).toEqual([]);
    expect(ok).toBeGreaterThan(100);
  });
});

/** Your own Envoy: the README's standalone snippets around a plain listener. */
function readmeBootstrap(): Yaml {
  const snippets = yamlSnippets();
  const filters = snippets.find((s) => 'http_filters' in s.value)?.value as Yaml | undefined;
  const tls = snippets.find((s) => 'transport_socket' in s.value)?.value as Yaml | undefined;
  if (filters === undefined || tls === undefined) throw new Error('README: the standalone Envoy snippets are missing');
  const clusters = structuredClone(filters['clusters']) as Yaml[];
  const extproc = clusters.find((c) => c['name'] === 'sandbox_extproc') as Yaml;
  extproc['transport_socket'] = tls['transport_socket'];
  // Test instrumentation only: health-check events on stdout, so the test can wait for them.
  for (const check of extproc['health_checks'] as Yaml[]) {
    check['event_logger'] = [
      {
        name: 'envoy.health_check.event_sinks.file',
        typed_config: {
          '@type': 'type.googleapis.com/envoy.extensions.health_check.event_sinks.file.v3.HealthCheckEventFileSink',
          event_log_path: '/dev/stdout',
        },
      },
    ];
    check['always_log_health_check_success'] = false;
  }
  return {
    admin: { address: { socket_address: { address: '127.0.0.1', port_value: 9901 } } },
    static_resources: {
      listeners: [
        {
          name: 'edge',
          address: { socket_address: { address: '0.0.0.0', port_value: 8080 } },
          filter_chains: [
            {
              filters: [
                {
                  name: 'envoy.filters.network.http_connection_manager',
                  typed_config: {
                    '@type': 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
                    stat_prefix: 'edge',
                    route_config: {
                      virtual_hosts: [
                        {
                          name: 'all',
                          domains: ['*'],
                          routes: [{ match: { prefix: '/' }, route: { cluster: 'sandboxes', timeout: '0s' } }],
                        },
                      ],
                    },
                    http_filters: [
                      ...(filters['http_filters'] as Yaml[]),
                      {
                        name: 'envoy.filters.http.router',
                        typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router' },
                      },
                    ],
                    access_log_options: filters['access_log_options'],
                    access_log: [
                      ...(filters['access_log'] as Yaml[]),
                      // Test instrumentation: every answer but a 200, on stdout.
                      {
                        name: 'envoy.access_loggers.stdout',
                        filter: { status_code_filter: { comparison: { op: 'NE', value: { default_value: 200, runtime_key: 'unused' } } } },
                        typed_config: {
                          '@type': 'type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog',
                          log_format: {
                            json_format: {
                              status: '%RESPONSE_CODE%',
                              details: '%RESPONSE_CODE_DETAILS%',
                              flags: '%RESPONSE_FLAGS%',
                              upstream: '%UPSTREAM_HOST%',
                              time: '%START_TIME%',
                            },
                          },
                        },
                      },
                    ],
                  },
                },
              ],
            },
          ],
        },
      ],
      clusters,
    },
  };
}

function envoyPodSpec(): V1PodSpec {
  const values = readFileSync(new URL('../../../charts/sandbox-extproc/values.yaml', import.meta.url), 'utf8');
  const match = /^envoy:\n\s+image:\n\s+repository: (\S+)\n\s+tag: (\S+)/m.exec(values);
  return {
    securityContext: { runAsNonRoot: true, runAsUser: 65532, runAsGroup: 65532, fsGroup: 65532 },
    terminationGracePeriodSeconds: 10,
    containers: [
      {
        name: 'envoy',
        image: `${match?.[1]}:${match?.[2]}`,
        args: ['-c', '/etc/envoy/envoy.yaml', '--log-level', 'info', '--file-flush-interval-msec', '50'],
        securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
        volumeMounts: [
          { name: 'config', mountPath: '/etc/envoy', readOnly: true },
          { name: 'tls', mountPath: '/etc/envoy/tls', readOnly: true },
        ],
      },
    ],
    volumes: [
      { name: 'config', configMap: { name: 'envoy' } },
      { name: 'tls', secret: { secretName: 'envoy-tls', defaultMode: 0o440 } },
    ],
  };
}
