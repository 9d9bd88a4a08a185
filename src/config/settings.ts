// Every setting of the service, in one table: its CLI flag, environment variable, default and meaning.
// --help, start-up validation, the config file's keys, the README's configuration table and the chart's
// values schema (each checked by a test) all come from here.
import { AGENT_SANDBOX_DEFAULT_NAMESPACE, AGENT_SANDBOX_DEFAULT_PORT, CONVENTIONS, E2B_DEFAULT_PORT } from '../identification/identify.ts';
import { SANDBOX_KIND_NAMES } from '../sandbox-kinds/kind.ts';
import * as p from './parsers.ts';

export interface Setting<T> {
  readonly flag: string;
  readonly env: string;
  readonly default: string;
  readonly help: string;
  readonly parse: p.Parser<T>;
  /** Older flag names still accepted (each with its own variable, from envOf), documented as aliases. */
  readonly aliases: readonly string[];
}

/** The environment variable of a flag name. */
export const envOf = (flag: string): string => `SANDBOX_EXTPROC_${flag.toUpperCase().replaceAll('-', '_')}`;

const setting = <T>(flag: string, def: string, parse: p.Parser<T>, help: string, aliases: readonly string[] = []): Setting<T> => ({
  flag,
  env: envOf(flag),
  default: def,
  help,
  parse,
  aliases,
});

const DNS_NAME = /^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/;
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const NAMESPACE_OR_ANY = /^(\*|[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$/;

export const SETTINGS = {
  config: setting(
    'config',
    '',
    p.string,
    'YAML file of settings by flag name (grpc-port: 9002); unknown names and bad values are refused. Flags and variables override it.',
  ),
  grpcHost: setting('grpc-host', '127.0.0.1', p.string, 'Address the ext_proc gRPC server listens on (0.0.0.0 for all).'),
  grpcPort: setting('grpc-port', '9002', p.port, 'TCP port of the ext_proc gRPC server; 0 picks a free one (logged).'),
  grpcTcp: setting('grpc-tcp', 'true', p.boolean, 'Serve gRPC on TCP; false serves only on grpc-socket.'),
  grpcSocket: setting('grpc-socket', '', p.string, 'Unix domain socket path for the gRPC server, in addition to TCP; empty for none.'),
  grpcSocketMode: setting('grpc-socket-mode', '0660', p.fileMode, 'File mode of the Unix socket.'),
  grpcTlsCert: setting('grpc-tls-cert', '', p.string, 'PEM certificate chain: serve gRPC over TLS (with grpc-tls-key).'),
  grpcTlsKey: setting('grpc-tls-key', '', p.string, 'PEM private key for grpc-tls-cert.'),
  grpcTlsClientCa: setting('grpc-tls-client-ca', '', p.string, 'PEM CA bundle: require client certificates signed by it (mTLS).'),
  grpcStreamResetLimit: setting(
    'grpc-stream-reset-limit',
    '10000',
    p.integer(1, 1_000_000_000),
    "Stream resets per second (and burst) one connection may send before it is closed, for peers not authenticated by mTLS nor local (loopback or the socket): Node's own guard, a backstop (Envoy resets every ext_proc stream it ends, so this cannot be lower than one Envoy worker's request rate; grpc-empty-stream-limit is the guard that tells floods from Envoy).",
  ),
  grpcEmptyStreamLimit: setting(
    'grpc-empty-stream-limit',
    '100',
    p.integer(1, 1_000_000),
    'Streams per second (and burst) one connection may end before sending their first message (reset by either side, or timed out) before it is closed: the rapid-reset guard. Envoy never does this.',
  ),
  grpcFirstMessageTimeout: setting(
    'grpc-first-message-timeout',
    '10s',
    p.duration(100, 600_000),
    'A gRPC stream that has not sent its first message within this is ended; it never counts toward max-streams.',
  ),
  grpcMaxConnections: setting(
    'grpc-max-connections',
    '1000',
    p.integer(1, 1_000_000),
    'Connections per gRPC listener; more are closed as they arrive (Envoy opens one per worker thread).',
  ),
  grpcConnectionBuffer: setting(
    'grpc-connection-buffer',
    '16Mi',
    p.bytes(64 * 1024, 2 ** 40),
    'Bytes one gRPC connection may hold: partial messages and answers the peer has not taken. Past it, the stream is reset (ENHANCE_YOUR_CALM).',
  ),
  grpcBuffer: setting(
    'grpc-buffer',
    '256Mi',
    p.bytes(64 * 1024, 2 ** 40),
    'Bytes all gRPC connections together may hold (as grpc-connection-buffer).',
  ),
  grpcMaxExtProcMessage: setting(
    'grpc-max-ext-proc-message',
    '256Ki',
    p.bytes(1024, 64 * 1024 ** 2),
    "Largest ext_proc message accepted (RESOURCE_EXHAUSTED beyond). Headers only: must hold Envoy's max_request_headers_kb (60 KiB by default) and its encoding.",
  ),
  grpcMaxAccessLogMessage: setting(
    'grpc-max-access-log-message',
    '1Mi',
    p.bytes(1024, 64 * 1024 ** 2),
    'Largest access log message accepted from Envoy (its batches are 16 KiB by default: buffer_size_bytes).',
  ),
  grpcKeepaliveInterval: setting(
    'grpc-keepalive-interval',
    '30s',
    p.duration(0, 3_600_000),
    'PING every gRPC connection this often, to notice a peer that went away without closing; 0s: never.',
  ),
  grpcKeepaliveTimeout: setting(
    'grpc-keepalive-timeout',
    '10s',
    p.duration(100, 600_000),
    'Close a gRPC connection whose PING is not answered within this.',
  ),
  maxStreams: setting(
    'max-streams',
    '10000',
    p.integer(1, 1_000_000),
    'Concurrent ext_proc requests (streams that sent their request_headers); beyond that a request is answered 503 overloaded at once.',
  ),
  httpHost: setting('http-host', '127.0.0.1', p.string, 'Address of the HTTP server for /metrics, /healthz and /readyz.'),
  httpPort: setting('http-port', '9003', p.port, 'Port of the HTTP server; 0 picks a free one (logged).'),
  routeSource: setting(
    'route-source',
    'kubernetes',
    p.oneOf('kubernetes', 'file'),
    'Where routes come from: a Kubernetes watch of Sandbox objects, or a file.',
  ),
  routesFile: setting('routes-file', '', p.string, 'YAML or JSON routes file (route-source=file); reloaded when it changes.'),
  kubeconfig: setting(
    'kubeconfig',
    '',
    p.string,
    'Kubeconfig path; empty uses $KUBECONFIG, ~/.kube/config, then the in-cluster service account.',
  ),
  sandboxKind: setting(
    'sandbox-kind',
    'openkruise',
    p.choiceList(true, ...SANDBOX_KIND_NAMES),
    'Sandbox CRD families to watch and wake, comma-separated: openkruise (agents.kruise.io), agent-sandbox (agents.x-k8s.io).',
  ),
  namespaces: setting('namespaces', '', p.list(DNS_NAME, 'a namespace name'), 'Comma-separated namespaces to watch; empty watches all.'),
  upstreamCidrs: setting(
    'upstream-cidrs',
    '',
    p.cidrList,
    'Networks pod IPs must lie in (e.g. the pod CIDR); empty allows any. Loopback, link-local, unspecified and multicast addresses are refused unless a listed network lies inside them.',
  ),
  labelSelector: setting('label-selector', '', p.string, 'Label selector limiting which sandboxes are routed.'),
  resyncInterval: setting(
    'resync-interval',
    '30m',
    p.duration(10_000, 86_400_000),
    'Full relist period, a safety net for deletions a watch missed; each relist reads every sandbox (~9 s of CPU at 100k).',
  ),
  watchIdleTimeout: setting(
    'watch-idle-timeout',
    '3m',
    p.duration(5_000, 3_600_000),
    'Restart a watch that delivered nothing (not even a bookmark) for this long.',
  ),
  identifyBy: setting(
    'identify-by',
    '',
    p.choiceList(false, ...CONVENTIONS),
    'Request conventions naming a sandbox, tried in this order: e2b (OpenKruise sandboxes), agent-sandbox (x-sandbox-id); empty: those of the enabled sandbox kinds.',
  ),
  sandboxIdHeader: setting('sandbox-id-header', 'e2b-sandbox-id', p.headerName, 'Request header naming the sandbox (E2B convention).'),
  sandboxPortHeader: setting(
    'sandbox-port-header',
    'e2b-sandbox-port',
    p.headerName,
    'Request header naming the sandbox port (E2B convention).',
  ),
  e2bDefaultPort: setting(
    'e2b-default-port',
    String(E2B_DEFAULT_PORT),
    p.integer(1, 65535),
    'Sandbox port when an E2B request names none (the E2B convention).',
    ['default-port'],
  ),
  agentSandboxDefaultNamespace: setting(
    'agent-sandbox-default-namespace',
    AGENT_SANDBOX_DEFAULT_NAMESPACE,
    p.matching(DNS_LABEL, 'a namespace name (a DNS-1123 label)'),
    'Namespace of an agent-sandbox request that sends no x-sandbox-namespace.',
  ),
  agentSandboxNamespaces: setting(
    'agent-sandbox-namespaces',
    '',
    p.list(NAMESPACE_OR_ANY, 'a namespace name or *'),
    'Namespaces an agent-sandbox request may name (x-sandbox-namespace), comma-separated; * for any; empty: only the default one.',
  ),
  agentSandboxDefaultPort: setting(
    'agent-sandbox-default-port',
    String(AGENT_SANDBOX_DEFAULT_PORT),
    p.integer(1, 65535),
    'Sandbox port when an agent-sandbox request names none (x-sandbox-port).',
  ),
  agentSandboxPathPrefix: setting(
    'agent-sandbox-path-prefix',
    '',
    p.matching(
      // eslint-disable-next-line no-control-regex -- control characters are what it refuses
      /^(?:\/[^/?#%\s\x00-\x1f\x7f]+)*$/,
      'a path such as /router (starting with /, not ending with /, no ?, #, % or whitespace)',
    ),
    "agent-sandbox's router path form (its --path-routing-prefix): <prefix>/<namespace>/<name>/<port>/<rest> names a sandbox, for browsers that cannot set headers; the sandbox gets /<rest>. It claims the whole URL space under the prefix. Empty: off.",
  ),
  agentSandboxAuthzMode: setting(
    'agent-sandbox-authz-mode',
    'allow-all',
    p.oneOf('allow-all', 'tokenreview', 'scoped-token'),
    "agent-sandbox requests' authorization (its router's --authz-mode), from Authorization: Bearer: allow-all; tokenreview (the Kubernetes TokenReview API authenticates the token; needs create on tokenreviews); scoped-token (an HMAC token bound to one sandbox).",
  ),
  agentSandboxAuthzTokenreviewTtl: setting(
    'agent-sandbox-authz-tokenreview-ttl',
    '30s',
    p.duration(1_000, 3_600_000),
    'How long a TokenReview verdict is remembered (by the token SHA-256); a failed review a third of it.',
  ),
  agentSandboxAuthzTokenreviewCacheSize: setting(
    'agent-sandbox-authz-tokenreview-cache-size',
    '2048',
    p.integer(1, 1_000_000),
    'TokenReview verdicts remembered at most (least recently used forgotten first).',
  ),
  agentSandboxAuthzTokenreviewRequireToken: setting(
    'agent-sandbox-authz-tokenreview-require-token',
    'true',
    p.boolean,
    "tokenreview mode: a request without a Bearer token is refused (401); false lets it through (the router's transitional default).",
  ),
  agentSandboxAuthzTokenreviewAudiences: setting(
    'agent-sandbox-authz-tokenreview-audiences',
    '',
    p.list(/^[^\s,]+$/, 'an audience'),
    'tokenreview mode: audiences the token must be minted for (sent in the review); empty: not checked.',
  ),
  agentSandboxAuthzScopedTokenSecretFile: setting(
    'agent-sandbox-authz-scoped-token-secret-file',
    '',
    p.string,
    'scoped-token mode: file holding the shared HMAC-SHA256 secret (at least 32 bytes after trimming whitespace), as the minter has it.',
  ),
  kruisePathRouting: setting(
    'kruise-path-routing',
    'true',
    p.boolean,
    "Serve OpenKruise's gateway path form /kruise/<sandboxID>/<port>/<rest> (E2B convention; the sandbox gets /<rest>); it wins over the headers and host, as in the gateway.",
  ),
  domains: setting(
    'domains',
    '',
    p.list(DNS_NAME, 'a lower-case domain'),
    'Comma-separated domains of <port>-<id>.<domain> hosts; empty accepts any.',
  ),
  unnamedRequests: setting(
    'unnamed-requests',
    'reject',
    p.oneOf('reject', 'pass'),
    'A request naming no sandbox: reject with 400, or pass through unchanged.',
  ),
  metadataNamespace: setting(
    'metadata-namespace',
    'envoy.lb.original_dst',
    p.string,
    'Dynamic metadata namespace the ORIGINAL_DST cluster reads.',
  ),
  metadataKey: setting('metadata-key', 'host', p.string, 'Key within the metadata namespace holding "ip:port".'),
  stripHeaders: setting(
    'strip-headers',
    'x-envoy-original-dst-host,x-sandbox-pod-ip,x-sandbox-uid',
    p.list(/^[a-z0-9!#$%&'*+.^_`|~-]+$/, 'a lower-case header name'),
    'Headers removed from every forwarded request, so clients cannot steer Envoy or a proxy behind it (agent-sandbox clients may send x-sandbox-pod-ip and x-sandbox-uid, which its router honours).',
  ),
  accessTokenCheck: setting(
    'access-token-check',
    'every-request',
    p.oneOf('every-request', 'wake-only'),
    "When a sandbox's credentials are checked (x-access-token; the traffic access token of OpenKruise sandboxes with JWT auth): on every request, as OpenKruise's gateway does, or only on requests that wake it.",
  ),
  trafficTokenHeader: setting(
    'traffic-token-header',
    'e2b-traffic-access-token',
    p.headerName,
    "Request header carrying the traffic access token (a JWT) of OpenKruise sandboxes annotated security.agents.kruise.io/enable-jwt-auth (the gateway's traffic-access-token-header); never forwarded to a sandbox.",
  ),
  trafficTokenDiscoveryUrl: setting(
    'traffic-token-discovery-url',
    '',
    p.httpsUrl,
    "OIDC discovery document (https) whose issuer and jwks_uri verify traffic access tokens, fetched once at start (the gateway's OIDC_DISCOVERY_URL); empty: none.",
  ),
  trafficTokenCaFile: setting(
    'traffic-token-ca-file',
    '',
    p.string,
    "PEM CA bundle trusted for the discovery and JWKS fetches (the gateway's OIDC CA ConfigMap, mounted as a file); empty: the system's roots.",
  ),
  trafficTokenJwksFile: setting(
    'traffic-token-jwks-file',
    '',
    p.string,
    'Local JWKS (JSON) verifying traffic access tokens, instead of discovery; needs traffic-token-issuer.',
  ),
  trafficTokenIssuer: setting(
    'traffic-token-issuer',
    '',
    p.string,
    "Issuer (iss) traffic access tokens must carry; with discovery, empty takes the discovery document's (a different one is refused).",
  ),
  trafficTokenAudience: setting(
    'traffic-token-audience',
    '',
    p.string,
    'Audience (aud) traffic access tokens must name; empty: not checked (the gateway does not check it).',
  ),
  trafficTokenClockSkew: setting(
    'traffic-token-clock-skew',
    '60s',
    p.duration(0, 3_600_000),
    "Clock skew allowed on a traffic access token's exp, nbf and iat (the gateway's OIDC_CLOCK_SKEW).",
  ),
  wake: setting('wake', 'true', p.boolean, 'Wake paused sandboxes that opted in to wake on traffic.'),
  wakeTimeout: setting(
    'wake-timeout',
    '60s',
    p.duration(1_000, 3_600_000),
    'How long a request waits for its sandbox to wake (per-sandbox annotation overrides).',
  ),
  minPauseTimeout: setting(
    'min-pause-timeout',
    '300s',
    p.duration(1_000, 86_400_000),
    "Least pause timeout a wake or activity re-arms a sandbox's pause timer with (OpenKruise's gateway uses 300s).",
  ),
  activity: setting(
    'activity',
    'true',
    p.boolean,
    "Keep sandboxes awake while used: requests and open streams (Envoy's access log service) push a sandbox's pause timer.",
  ),
  activityFraction: setting(
    'activity-fraction',
    '0.5',
    p.fraction,
    'Push a pause timer only once the time left on it falls below this fraction of its timeout.',
  ),
  activityMinInterval: setting(
    'activity-min-interval',
    '30s',
    p.duration(1_000, 3_600_000),
    'Least time between two activity writes for one sandbox from one replica.',
  ),
  idleSuspension: setting(
    'idle-suspension',
    'true',
    p.boolean,
    'agent-sandbox: suspend wake-opted-in Sandboxes idle for their idle timeout (annotation sandbox-extproc.io/idle-timeout, or idle-timeout in idle-namespaces), one replica at a time, elected with a Lease.',
  ),
  idleTimeout: setting(
    'idle-timeout',
    '0s',
    p.duration(0, 30 * 86_400_000),
    'agent-sandbox: the idle timeout of wake-opted-in Sandboxes in idle-namespaces that name none; 0s: only Sandboxes that name their own are ever suspended.',
  ),
  idleNamespaces: setting(
    'idle-namespaces',
    '',
    p.list(NAMESPACE_OR_ANY, 'a namespace name or *'),
    'Namespaces where idle-timeout applies to every wake-opted-in agent-sandbox Sandbox, comma-separated; * for all.',
  ),
  idleSweepInterval: setting(
    'idle-sweep-interval',
    '5s',
    p.duration(100, 600_000),
    "How often the idle suspender (the Lease's holder) checks the route table for sandboxes idle past their timeout.",
  ),
  idleSuspensionsPerSecond: setting(
    'idle-suspensions-per-second',
    '20',
    p.integer(1, 1000),
    'Idle suspensions started per second at most (8 in flight at once): many sandboxes going idle together are suspended at a pace the API server and the controller take.',
  ),
  leaseName: setting(
    'lease-name',
    'sandbox-extproc-idle-suspender',
    p.matching(DNS_NAME, 'a DNS name'),
    "The idle suspender's Lease (coordination.k8s.io).",
  ),
  leaseNamespace: setting(
    'lease-namespace',
    '',
    p.matching(/^$|^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, 'a namespace name'),
    "Namespace of the idle suspender's Lease; empty: the service's own (its ServiceAccount's), or default outside a cluster.",
  ),
  leaseDuration: setting(
    'lease-duration',
    '15s',
    p.duration(2_000, 300_000),
    'How long a Lease holder may go without renewing before another replica takes the idle suspender over (it renews every third of that).',
  ),
  maxMessageTimeout: setting(
    'max-message-timeout',
    '300s',
    p.duration(2_000, 3_600_000),
    "Envoy's ext_proc max_message_timeout: a held request never asks Envoy for longer.",
  ),
  maxWaitersPerSandbox: setting(
    'max-waiters-per-sandbox',
    '1000',
    p.integer(1, 1_000_000),
    'Requests that may wait on one sandbox; beyond that 503 at once.',
  ),
  maxWaiters: setting(
    'max-waiters',
    '10000',
    p.integer(1, 10_000_000),
    'Requests that may wait on wakes in total; beyond that 503 at once.',
  ),
  tracingEndpoint: setting(
    'tracing-endpoint',
    '',
    p.httpUrl,
    'OTLP/HTTP endpoint traces are sent to (http://collector:4318; /v1/traces is added): a span per decision and per wake, joined to the traceparent Envoy forwards. Empty: tracing off.',
  ),
  tracingSampleRatio: setting(
    'tracing-sample-ratio',
    '1',
    p.ratio,
    "Share of requests traced when their traceparent does not decide (a sampled parent is always followed, as OpenTelemetry's parent-based sampler does).",
  ),
  logLevel: setting(
    'log-level',
    'info',
    p.oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'),
    'Log level (pino). No line per request at info.',
  ),
  drainDelay: setting(
    'drain-delay',
    '0s',
    p.duration(0, 300_000),
    'On SIGTERM, keep serving this long after health turns NOT_SERVING, so Envoy health checks move traffic first.',
  ),
  shutdownGrace: setting(
    'shutdown-grace',
    '10s',
    p.duration(0, 600_000),
    'On SIGTERM, how long in-flight streams may finish before being cut.',
  ),
} as const;

export type SettingKey = keyof typeof SETTINGS;

export type Config = {
  readonly [K in SettingKey]: (typeof SETTINGS)[K] extends Setting<infer T> ? T : never;
};
