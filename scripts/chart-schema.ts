// Writes charts/sandbox-extproc/values.schema.json and files/settings-env.yaml. The `config` section comes
// from the service's own settings table, so every setting the chart does not manage itself is reachable
// through values, and a misspelt name or bad value is refused at install time; settings-env.yaml maps
// each `config` name to its environment variable (the deployment reads it: Helm's snakecase would turn
// e2bDefaultPort into E_2B_DEFAULT_PORT, which the service refuses). test/unit/chart-schema.test.ts
// keeps both files in step.
import { writeFileSync } from 'node:fs';
import { envOf, SETTINGS, type SettingKey } from '../src/config/settings.ts';

/** Settings the chart sets from its own values (listeners, route source, namespaces). */
export const CHART_MANAGED: readonly SettingKey[] = [
  'grpcHost',
  'grpcPort',
  'grpcTcp',
  'grpcSocket',
  'grpcSocketMode',
  // grpcTls mounts the certificates from a Secret and sets these paths.
  'grpcTlsCert',
  'grpcTlsKey',
  'grpcTlsClientCa',
  'httpHost',
  'httpPort',
  'routeSource',
  'routesFile',
  'kubeconfig',
  'namespaces',
  'labelSelector',
  'logLevel',
  // A file of settings is for installs without the chart: the chart's values are its file.
  'config',
];

/** camelCase of a flag name: e2b-default-port -> e2bDefaultPort. */
const camel = (flag: string) => flag.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** Every `config` value name the chart accepts (settings and their aliases) and its variable. */
export function configEnv(): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, setting] of Object.entries(SETTINGS) as [SettingKey, (typeof SETTINGS)[SettingKey]][]) {
    if (CHART_MANAGED.includes(key)) continue;
    out[key] = setting.env;
    for (const alias of setting.aliases) out[camel(alias)] = envOf(alias);
  }
  return out;
}

const DNS_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
const DURATION = { type: 'string', pattern: '^[0-9]+(ms|s|m|h)$' };
const port = { type: 'integer', minimum: 1, maximum: 65535 };
const obj = (properties: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  type: 'object',
  additionalProperties: false,
  properties,
  ...extra,
});
const free = { type: 'object' };
const image = obj({
  repository: { type: 'string', minLength: 1 },
  tag: { type: 'string' },
  digest: { type: 'string', pattern: '^$|^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$' },
  pullPolicy: { type: 'string', enum: ['Always', 'IfNotPresent', 'Never'] },
});
const list = { type: 'array' };

export function chartSchema(): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  for (const [key, setting] of Object.entries(SETTINGS) as [SettingKey, (typeof SETTINGS)[SettingKey]][]) {
    if (CHART_MANAGED.includes(key)) continue;
    const schema: Record<string, unknown> = { ...setting.parse.schema, description: setting.help };
    // Numbers and booleans may also be written as strings in values files.
    config[key] = schema['type'] === 'string' ? schema : { anyOf: [schema, { type: 'string' }], description: setting.help };
    for (const alias of setting.aliases) {
      config[camel(alias)] = { ...(config[key] as Record<string, unknown>), description: `Alias of ${key}, kept for existing installs.` };
    }
  }
  return {
    $schema: 'https://json-schema.org/draft-07/schema#',
    title: 'sandbox-extproc chart values',
    ...obj(
      {
        mode: { type: 'string', enum: ['sidecar', 'standalone'] },
        nameOverride: { type: 'string' },
        fullnameOverride: { type: 'string', pattern: `^$|${DNS_LABEL.slice(1)}` },
        // A parent chart's global values reach every subchart: accepted whatever they hold (helm/helm#10392:
        // a strict root schema without it fails as a subchart), imageRegistry checked.
        global: { type: 'object', properties: { imageRegistry: { type: 'string' } } },
        replicaCount: { type: 'integer', minimum: 0 },
        image,
        imagePullSecrets: { type: 'array' },
        envoy: obj({
          image,
          port,
          adminPort: port,
          messageTimeout: DURATION,
          maxMessageTimeout: DURATION,
          requestHeadersTimeout: DURATION,
          streamIdleTimeout: DURATION,
          websocketIdleTimeout: DURATION,
          maxConnections: { type: 'integer', minimum: 1 },
          xffNumTrustedHops: { type: 'integer', minimum: 0 },
          drainSeconds: { type: 'integer', minimum: 0 },
          logLevel: { type: 'string', enum: ['trace', 'debug', 'info', 'warning', 'warn', 'error', 'critical', 'off'] },
          concurrency: { type: 'integer', minimum: 0 },
          statsPort: port,
          resources: free,
        }),
        service: obj({
          type: { type: 'string', enum: ['ClusterIP', 'NodePort', 'LoadBalancer'] },
          port,
          grpcPort: port,
          httpPort: port,
          headless: { type: 'boolean' },
          annotations: free,
          externalTrafficPolicy: { type: 'string', enum: ['', 'Cluster', 'Local'] },
          loadBalancerClass: { type: 'string' },
        }),
        grpcTls: obj({ secretName: { type: 'string' }, clientCa: { type: 'boolean' } }),
        networkPolicy: obj({
          enabled: { type: 'boolean' },
          grpcFrom: { type: 'array' },
          gatewayNamespace: { type: 'string', pattern: `^$|${DNS_LABEL.slice(1)}` },
          metricsFrom: { type: 'array' },
          edgeFrom: { type: 'array' },
        }),
        agentSandboxRouter: obj({
          enabled: { type: 'boolean' },
          serviceName: { type: 'string', pattern: DNS_LABEL },
          port,
          edgeSelector: free,
          edgeTargetPort: { anyOf: [port, { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$' }] },
          podLabels: free,
          scopedTokenSecret: obj({ name: { type: 'string' }, key: { type: 'string', minLength: 1 } }),
        }),
        admissionPolicy: obj({ enabled: { type: 'boolean' } }),
        watchNamespaces: { type: 'array', items: { type: 'string', pattern: DNS_LABEL }, uniqueItems: true },
        labelSelector: { type: 'string' },
        podCIDR: { ...SETTINGS.upstreamCidrs.parse.schema, description: 'The pod network(s): sets config.upstreamCidrs.' },
        config: obj(config),
        logLevel: { type: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
        serviceAccount: obj({ create: { type: 'boolean' }, name: { type: 'string' }, annotations: free }),
        resources: free,
        podDisruptionBudget: obj({
          enabled: { type: 'boolean' },
          minAvailable: { anyOf: [{ type: 'integer', minimum: 0 }, { type: 'string' }] },
        }),
        autoscaling: obj({
          enabled: { type: 'boolean' },
          minReplicas: { type: 'integer', minimum: 1 },
          maxReplicas: { type: 'integer', minimum: 1 },
          targetCPUUtilizationPercentage: { type: 'integer', minimum: 1, maximum: 100 },
        }),
        prometheusRule: obj({
          enabled: { type: 'boolean' },
          labels: free,
          runbookUrl: { type: 'string' },
          thresholds: obj({
            wakeFailureRatio: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
            wakeLatencyOfDeadline: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
            decisionP99Seconds: { type: 'number', exclusiveMinimum: 0 },
            nearLimitRatio: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
            watchRestartsPer15m: { type: 'integer', minimum: 0 },
            idleFlapsPer30m: { type: 'integer', minimum: 0 },
          }),
        }),
        grafanaDashboard: obj({ enabled: { type: 'boolean' }, labels: free, annotations: free }),
        serviceMonitor: obj({ enabled: { type: 'boolean' }, interval: DURATION, labels: free }),
        podSecurityContext: free,
        securityContext: free,
        terminationGracePeriodSeconds: { type: 'integer', minimum: 0 },
        podAnnotations: free,
        podLabels: free,
        priorityClassName: { type: 'string' },
        nodeSelector: free,
        tolerations: list,
        affinity: free,
        podAntiAffinity: { type: 'string', enum: ['soft', 'hard', 'none'] },
        topologySpreadConstraints: list,
        extraEnv: list,
        extraEnvFrom: list,
        extraVolumes: list,
        extraVolumeMounts: list,
        tests: obj({ enabled: { type: 'boolean' } }),
      },
      { required: ['mode', 'image', 'envoy', 'service', 'config'] },
    ),
  };
}

export const SCHEMA_PATH = new URL('../charts/sandbox-extproc/values.schema.json', import.meta.url);
export const CONFIG_ENV_PATH = new URL('../charts/sandbox-extproc/files/settings-env.yaml', import.meta.url);

export function configEnvText(): string {
  const lines = Object.entries(configEnv()).map(([name, env]) => `${name}: ${env}`);
  return `# Generated by scripts/chart-schema.ts: each config value's environment variable.\n${lines.join('\n')}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  writeFileSync(SCHEMA_PATH, `${JSON.stringify(chartSchema(), null, 2)}\n`);
  writeFileSync(CONFIG_ENV_PATH, configEnvText());
}
