// The closed set of answers the service gives in place of the upstream. Every code is documented in the
// README's status table; test/unit/core/errors.test.ts keeps the two in step. Status codes follow the
// E2B-compatible gateway: 502 for a sandbox that cannot serve, 503 for one that may serve soon. Where
// OpenKruise's sandbox-gateway answers the same case, the message is its text, word for word (E2B SDKs
// show clients the message; scripts match on it), and the code is its response code detail.
// Answers to agent-sandbox requests also carry its router's `detail` field (its SDKs show it): the
// router's own text where it answers the same case, else the message.

export interface ErrorSpec {
  readonly status: number;
  readonly message: string;
  /** The message ends with ": <sandbox ID>" when the answer names one (as the gateway's do). */
  readonly namesSandbox?: true;
  /** Seconds a client should wait before retrying; set on answers that may succeed later. */
  readonly retryAfter?: number;
  /**
   * agent-sandbox's router text for the same case (its `detail`); with routerNamesSandbox, followed by
   * ": <sandbox name>" as its 502 is. Absent: the message is the detail.
   */
  readonly detail?: string;
  readonly routerNamesSandbox?: true;
}

/** agent-sandbox's router answer when it cannot reach the sandbox (its 502). */
const UNREACHABLE = 'Could not connect to the backend sandbox';

export const ERRORS = {
  missing_sandbox: { status: 400, message: 'the request names no sandbox', detail: 'X-Sandbox-ID header is required.' },
  invalid_sandbox_id: { status: 400, message: 'the sandbox ID is malformed', detail: 'Invalid sandbox ID format.' },
  invalid_sandbox_port: { status: 400, message: 'the sandbox port is malformed', detail: 'Invalid port format.' },
  invalid_host: { status: 400, message: 'the host does not have the form <port>-<sandboxID>.<domain>' },
  invalid_sandbox_namespace: { status: 400, message: 'the sandbox namespace is malformed', detail: 'Invalid namespace format.' },
  invalid_pod_ip: { status: 400, message: 'x-sandbox-pod-ip is not an address a sandbox may have', detail: 'Invalid target IP address.' },
  invalid_path: { status: 400, message: 'the path does not have the form of its path routing' },
  unauthorized: { status: 401, message: 'unauthorized: invalid or missing access token' },
  unauthenticated: { status: 401, message: 'unauthenticated: missing or invalid bearer token', detail: 'unauthenticated' },
  forbidden: { status: 403, message: 'forbidden: invalid or missing traffic access token' },
  token_scope_mismatch: { status: 403, message: 'forbidden: the token is scoped to another sandbox', detail: 'forbidden' },
  namespace_not_allowed: { status: 403, message: 'requests may not name sandboxes in this namespace' },
  sandbox_not_found: { status: 502, message: 'sandbox not found', namesSandbox: true, detail: UNREACHABLE, routerNamesSandbox: true },
  sandbox_id_conflict: { status: 502, message: 'more than one sandbox claims this ID, so none is served' },
  sandbox_not_running: {
    status: 502,
    message: 'healthy sandbox not found',
    namesSandbox: true,
    detail: UNREACHABLE,
    routerNamesSandbox: true,
  },
  sandbox_not_ready: { status: 503, message: 'the sandbox is starting', retryAfter: 1 },
  sandbox_wake_timeout: { status: 503, message: 'the sandbox did not start within the wake deadline', retryAfter: 2 },
  sandbox_wake_failed: { status: 503, message: 'the sandbox could not be woken', retryAfter: 2 },
  wake_capacity_exceeded: { status: 503, message: 'too many requests are waiting for sandboxes to wake', retryAfter: 1 },
  overloaded: { status: 503, message: 'the service is at its limit of concurrent requests', retryAfter: 1 },
  routes_not_ready: { status: 503, message: 'sandbox gateway is not ready', retryAfter: 1 },
  jwt_verifier_not_ready: { status: 503, message: 'service unavailable: traffic access token verifier is not ready' },
  authz_unavailable: { status: 503, message: 'the bearer token could not be reviewed (Kubernetes API unavailable)', retryAfter: 1 },
  internal_error: { status: 500, message: 'the request could not be processed' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

export const ERROR_CODES = Object.keys(ERRORS) as ErrorCode[];
