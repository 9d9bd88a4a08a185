// Which sandbox a request names. Two conventions, each naming one Sandbox family:
// - E2B (OpenKruise sandboxes): OpenKruise's gateway path `/kruise/<sandboxID>/<port>/<rest>` (which
//   wins, as in the gateway's adapter), the e2b-sandbox-id / e2b-sandbox-port headers, or else the host
//   `<port>-<sandboxID>.<domain>`;
// - agent-sandbox (its router's contract): its router's path form `<prefix>/<namespace>/<name>/<port>/<rest>`
//   (when a prefix is configured; it wins, as in the router), else x-sandbox-id (the Sandbox name, a
//   DNS-1123 label), x-sandbox-namespace and x-sandbox-port, naming the sandbox `<namespace>/<name>`.
// With both on, a request is identified by the first convention, in the configured order, whose ID
// header it carries; the E2B host form comes last, since nearly every request has a host.
// Pure and allocation-light: it runs once per request.
import type { ErrorCode } from '../core/errors.ts';
import { UpstreamAddressPolicy } from '../routes/upstream-address.ts';

/** The port E2B clients reach when they name none: envd, the in-sandbox agent. */
export const E2B_DEFAULT_PORT = 49983;
/** agent-sandbox's router defaults (their sandbox-router/README.md). */
export const AGENT_SANDBOX_DEFAULT_PORT = 8888;
export const AGENT_SANDBOX_DEFAULT_NAMESPACE = 'default';

export type Convention = 'e2b' | 'agent-sandbox';
export const CONVENTIONS: readonly Convention[] = ['e2b', 'agent-sandbox'];

export interface AgentSandboxIdentifyOptions {
  /** The namespace of a request that sends no x-sandbox-namespace. */
  readonly defaultNamespace: string;
  readonly defaultPort: number;
  /** Namespaces a request may name; ['*'] allows any; empty allows only the default namespace. */
  readonly namespaces: readonly string[];
  /**
   * The router's --path-routing-prefix (`/router`, say): `<prefix>/<namespace>/<name>/<port>/<rest>` names
   * a sandbox, for callers that cannot set headers (a browser tab, an iframe, a WebSocket handshake).
   * Empty or absent: off.
   */
  readonly pathPrefix?: string;
  /**
   * Which x-sandbox-pod-ip values are refused as their router refuses them: not an IP, loopback,
   * link-local, multicast, unspecified (unless --upstream-cidrs opts a range in, as their
   * --allow-loopback-pod-ip does loopback). Default: those, none opted in.
   */
  readonly podIPs?: Pick<UpstreamAddressPolicy, 'specialRefusal'>;
}

export interface IdentifyOptions {
  /** Lower-case domains accepted in the host form; empty accepts any domain. */
  readonly domains: readonly string[];
  /** E2B's default port. */
  readonly defaultPort: number;
  /** Conventions on, in the order tried (default: E2B only). */
  readonly conventions?: readonly Convention[];
  /** Required when the agent-sandbox convention is on. */
  readonly agentSandbox?: AgentSandboxIdentifyOptions;
  /** Serve OpenKruise's gateway path form /kruise/<id>/<port>/<rest> (E2B convention; default off). */
  readonly kruisePath?: boolean;
}

/** The few request facts identification reads, already taken from the header list. */
export interface IdentityFacts {
  readonly authority: string | undefined;
  readonly sandboxId: string | undefined;
  readonly sandboxPort: string | undefined;
  /** :path, read only when the path form is on. */
  readonly path?: string | undefined;
  /** agent-sandbox's x-sandbox-id, x-sandbox-namespace, x-sandbox-port (read only when that convention is on). */
  readonly agentSandboxId?: string | undefined;
  readonly agentSandboxNamespace?: string | undefined;
  readonly agentSandboxPort?: string | undefined;
  /** x-sandbox-pod-ip: never used to route, but refused when it is not an address their router would take. */
  readonly agentSandboxPodIP?: string | undefined;
}

export type Identification =
  | {
      readonly kind: 'named';
      readonly sandboxId: string;
      readonly port: number;
      /** The :path the sandbox gets instead of the request's (the path form's rest). */
      readonly path?: string;
      /** Named by the agent-sandbox convention: its answers carry the router's `detail` field. */
      readonly agentSandbox?: true;
    }
  | { readonly kind: 'none' }
  | {
      readonly kind: 'malformed';
      readonly code: ErrorCode;
      readonly reason: string;
      readonly sandboxId?: string;
      /** Refused under the agent-sandbox convention: the router's own `detail` text for this case. */
      readonly detail?: string;
    };

// A sandbox ID is a label value (`agents.kruise.io/sandbox-id`) or `<namespace>--<name>`: letters, digits,
// '-', '_', '.', starting and ending alphanumeric, at most 63 + 2 + 253 characters. Slashes, spaces and
// path segments never pass, so an ID can never smuggle a path or a second host.
const ID_PATTERN = /^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,316}[A-Za-z0-9])?$/;
// Canonical decimal only: "0080" would give one port many names (and origins), so it is refused.
const PORT_PATTERN = /^[1-9][0-9]{0,4}$/;
const HOST_LABEL_PATTERN = /^([0-9]+)-(.+)$/;
// A DNS-1123 label: what agent-sandbox's router accepts for x-sandbox-id and x-sandbox-namespace.
const DNS_LABEL_PATTERN = /^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$/;
const NONE: Identification = { kind: 'none' };
const E2B_ONLY: readonly Convention[] = ['e2b'];

export function isValidSandboxId(id: string): boolean {
  return ID_PATTERN.test(id) && !id.includes('..');
}

/** Parses a port; undefined when it is not a decimal in 1..65535. */
export function parsePort(text: string): number | undefined {
  if (!PORT_PATTERN.test(text)) return undefined;
  const port = Number(text);
  // The pattern admits no 0 (nor a leading zero): only the upper bound is left to check.
  return port <= 65535 ? port : undefined;
}

export function identify(facts: IdentityFacts, options: IdentifyOptions): Identification {
  const conventions = options.conventions ?? E2B_ONLY;
  // Stryker disable next-line ConditionalExpression,LogicalOperator,EqualityOperator,BlockStatement: equivalent; the fast path answers what the loop below answers
  if (conventions.length === 1 && conventions[0] === 'e2b') {
    // The common case, kept as short as it was before there were two conventions.
    if (options.kruisePath === true && isKruisePath(facts.path)) return fromKruisePath(facts.path as string);
    if (facts.sandboxId !== undefined) return fromHeaders(facts.sandboxId, facts.sandboxPort, options);
    return facts.authority !== undefined ? fromHost(facts.authority, options) : NONE;
  }
  // Path forms first, whatever the order: each claims its whole URL space, as in the gateway and the router.
  for (const convention of conventions) {
    if (convention === 'e2b') {
      if (options.kruisePath === true && isKruisePath(facts.path)) return fromKruisePath(facts.path as string);
    } else {
      const prefix = options.agentSandbox?.pathPrefix;
      if (prefix !== undefined && prefix !== '' && isUnderPrefix(facts.path, prefix)) {
        return fromRouterPath(facts.path as string, prefix, options.agentSandbox as AgentSandboxIdentifyOptions);
      }
    }
  }
  let e2b = false;
  for (const convention of conventions) {
    if (convention === 'e2b') {
      e2b = true;
      if (facts.sandboxId !== undefined) return fromHeaders(facts.sandboxId, facts.sandboxPort, options);
    } else if (facts.agentSandboxId !== undefined && options.agentSandbox !== undefined) {
      return fromAgentSandboxHeaders(facts, options.agentSandbox);
    }
  }
  if (e2b && facts.authority !== undefined) return fromHost(facts.authority, options);
  return NONE;
}

/**
 * agent-sandbox's contract: the Sandbox name and namespace are DNS-1123 labels (as their router checks),
 * the port a canonical decimal. The sandbox ID is `<namespace>/<name>`, which no E2B ID can be. A
 * namespace outside the allowed set is refused before any lookup, so a request can never reach, or even
 * probe for, a sandbox in a namespace it may not name.
 */
function fromAgentSandboxHeaders(facts: IdentityFacts, options: AgentSandboxIdentifyOptions): Identification {
  const name = facts.agentSandboxId as string;
  if (name === '') return { kind: 'malformed', code: 'missing_sandbox', reason: 'x-sandbox-id is empty', detail: ROUTER_DETAIL.missing };
  if (!DNS_LABEL_PATTERN.test(name)) return badName(name);
  const given = facts.agentSandboxNamespace;
  const namespace = given === undefined || given === '' ? options.defaultNamespace : given;
  if (!DNS_LABEL_PATTERN.test(namespace)) return badNamespace(namespace);
  if (!namespaceAllowed(namespace, options)) return notAllowed(namespace);
  const portText = facts.agentSandboxPort;
  let port = options.defaultPort;
  if (portText !== undefined && portText !== '') {
    const parsed = parsePort(portText);
    if (parsed === undefined) return badPort(portText, `${namespace}/${name}`);
    port = parsed;
  }
  // Their router dials a valid x-sandbox-pod-ip directly; here it is never read for routing (and is
  // removed before forwarding), but one their router would refuse is refused the same way.
  const podIP = facts.agentSandboxPodIP;
  const refusal = podIP === undefined || podIP === '' ? undefined : (options.podIPs ?? POD_IP_POLICY).specialRefusal(podIP);
  if (refusal !== undefined) {
    return {
      kind: 'malformed',
      code: 'invalid_pod_ip',
      reason: `x-sandbox-pod-ip ${describe(podIP as string)} is ${refusal}`,
      sandboxId: `${namespace}/${name}`,
      detail: ROUTER_DETAIL.podIP,
    };
  }
  return { kind: 'named', sandboxId: `${namespace}/${name}`, port, agentSandbox: true };
}

/** agent-sandbox's router `detail` texts (sandbox-router/proxy: headers.go, pathroute.go), word for word. */
export const ROUTER_DETAIL = {
  missing: 'X-Sandbox-ID header is required.',
  name: 'Invalid sandbox ID format.',
  namespace: 'Invalid namespace format.',
  port: 'Invalid port format.',
  podIP: 'Invalid target IP address.',
  pathForm: 'Path-routed request must have the form <prefix>/<namespace>/<id>/<port>/...',
  pathEncoding: 'Invalid percent-encoding in path.',
} as const;

/** What x-sandbox-pod-ip may be in their router: an IP literal, not loopback, link-local, multicast or unspecified. */
const POD_IP_POLICY = new UpstreamAddressPolicy();

function badName(name: string): Identification {
  return {
    kind: 'malformed',
    code: 'invalid_sandbox_id',
    reason: `sandbox name ${describe(name)} is not a DNS-1123 label`,
    detail: ROUTER_DETAIL.name,
  };
}

function badNamespace(namespace: string): Identification {
  return {
    kind: 'malformed',
    code: 'invalid_sandbox_namespace',
    reason: `sandbox namespace ${describe(namespace)} is not a DNS-1123 label`,
    detail: ROUTER_DETAIL.namespace,
  };
}

function notAllowed(namespace: string): Identification {
  return {
    kind: 'malformed',
    code: 'namespace_not_allowed',
    reason: `requests may not name sandboxes in namespace ${describe(namespace)}`,
  };
}

function badPort(portText: string, sandboxId: string): Identification {
  return {
    kind: 'malformed',
    code: 'invalid_sandbox_port',
    reason: `sandbox port ${describe(portText)} is not a number from 1 to 65535`,
    sandboxId,
    detail: ROUTER_DETAIL.port,
  };
}

/**
 * Whether the path lies under the router's path prefix. The prefix claims its whole URL space: the
 * prefix itself, `<prefix>/...` and `<prefix>?...` (theirs lets the bare prefix through to the headers);
 * `<prefix>ish/...` is not under it.
 */
function isUnderPrefix(path: string | undefined, prefix: string): boolean {
  if (path === undefined || !path.startsWith(prefix)) return false;
  const next = path.charCodeAt(prefix.length);
  return Number.isNaN(next) || next === 0x2f /* / */ || next === 0x3f; /* ? */
}

/**
 * agent-sandbox's router path form, as its ParsePathRoute reads it: `<prefix>/<namespace>/<name>/<port>`
 * then anything. The three segments are percent-decoded and checked as the headers are; the rest of the
 * path reaches the sandbox byte for byte (nothing decoded: %2F stays %2F), with the query string, as
 * `/<rest>`. A malformed one is refused, never routed another way.
 */
function fromRouterPath(path: string, prefix: string, options: AgentSandboxIdentifyOptions): Identification {
  const queryAt = path.indexOf('?');
  const pathOnly = queryAt === -1 ? path : path.slice(0, queryAt);
  const query = queryAt === -1 ? '' : path.slice(queryAt);
  const malformed: Identification = {
    kind: 'malformed',
    code: 'invalid_path',
    reason: `path ${describe(path)} is not ${prefix}/<namespace>/<name>/<port>/<rest>`,
    detail: ROUTER_DETAIL.pathForm,
  };
  // Stryker disable next-line ConditionalExpression: equivalent; after the prefix comes '/', '?' or the end, and in the last two cases no '/' follows it, so nameEnd is -1 below
  if (pathOnly.charCodeAt(prefix.length) !== 0x2f) return malformed;
  const nsEnd = pathOnly.indexOf('/', prefix.length + 1);
  // Stryker disable next-line ConditionalExpression,UnaryOperator: equivalent; with nsEnd -1, indexOf('/', 0) is 0 (paths start with the prefix's '/'), so the name segment is empty: malformed
  const nameEnd = nsEnd === -1 ? -1 : pathOnly.indexOf('/', nsEnd + 1);
  // Stryker disable next-line ConditionalExpression,UnaryOperator: equivalent; with nameEnd -1, portEnd is 0 and the port segment empty: malformed below
  if (nameEnd === -1) return malformed;
  const portEnd = pathOnly.indexOf('/', nameEnd + 1);
  const segments = [
    pathOnly.slice(prefix.length + 1, nsEnd),
    pathOnly.slice(nsEnd + 1, nameEnd),
    pathOnly.slice(nameEnd + 1, portEnd === -1 ? undefined : portEnd),
  ];
  if (segments.includes('')) return malformed;
  const [namespace, name, portText] = segments.map(percentDecode);
  if (namespace === undefined || name === undefined || portText === undefined) {
    return { ...malformed, reason: `path ${describe(path)} has a malformed percent-encoding`, detail: ROUTER_DETAIL.pathEncoding };
  }
  if (!DNS_LABEL_PATTERN.test(namespace)) return badNamespace(namespace);
  if (!DNS_LABEL_PATTERN.test(name)) return badName(name);
  if (!namespaceAllowed(namespace, options)) return notAllowed(namespace);
  const port = parsePort(portText);
  if (port === undefined) return badPort(portText, `${namespace}/${name}`);
  const rest = portEnd === -1 ? '' : pathOnly.slice(portEnd + 1);
  return { kind: 'named', sandboxId: `${namespace}/${name}`, port, path: `/${rest}${query}`, agentSandbox: true };
}

/** Go's url.PathUnescape: %XX to its byte (the result is then checked as ASCII); undefined on a bad escape. */
function percentDecode(segment: string): string | undefined {
  // Stryker disable next-line ConditionalExpression,StringLiteral: equivalent; a fast path, the loop returns a segment without '%' unchanged
  if (!segment.includes('%')) return segment;
  let out = '';
  for (let i = 0; i < segment.length; i += 1) {
    if (segment[i] !== '%') {
      out += segment[i];
      continue;
    }
    const hex = segment.slice(i + 1, i + 3);
    // Stryker disable next-line Regex: equivalent; hex has at most two characters, so two hex digits anywhere in it are all of it
    if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return undefined;
    out += String.fromCharCode(parseInt(hex, 16));
    i += 2;
  }
  return out;
}

const KRUISE_PREFIX = '/kruise';

/**
 * Whether the path is in OpenKruise's gateway path form: the /kruise segment claims its whole URL
 * space (/kruise, /kruise/..., /kruise?...), so a malformed one is refused, never routed otherwise.
 * /kruisefoo is not the form (the gateway's adapter would read it as one, with the ID's first letter cut).
 */
function isKruisePath(path: string | undefined): boolean {
  if (path === undefined || !path.startsWith(KRUISE_PREFIX)) return false;
  const next = path.charCodeAt(KRUISE_PREFIX.length);
  return Number.isNaN(next) || next === 0x2f /* / */ || next === 0x3f; /* ? */
}

/**
 * OpenKruise's gateway path form, `/kruise/<sandboxID>/<port>/<rest>`: the sandbox gets `/<rest>`, byte
 * for byte (query string included, nothing decoded: %2F stays %2F). `/kruise/<id>/<port>` and
 * `/kruise/<id>/<port>/` give `/`; `/kruise/<id>/<port>?q` gives `/?q` (the gateway's adapter cannot
 * parse that port and lets the request through unrouted). ID and port are checked as in the header form.
 */
function fromKruisePath(path: string): Identification {
  const idStart = KRUISE_PREFIX.length + 1;
  const idEnd = path.indexOf('/', idStart);
  if (path.charCodeAt(KRUISE_PREFIX.length) !== 0x2f || idEnd === -1) {
    return { kind: 'malformed', code: 'invalid_path', reason: `path ${describe(path)} names no sandbox ID and port` };
  }
  const id = path.slice(idStart, idEnd);
  let portEnd = idEnd + 1;
  // Stryker disable next-line EqualityOperator: equivalent; one step past the end slices the same port and rest
  while (portEnd < path.length && path[portEnd] !== '/' && path[portEnd] !== '?') portEnd += 1;
  const portText = path.slice(idEnd + 1, portEnd);
  if (!isValidSandboxId(id)) {
    return { kind: 'malformed', code: 'invalid_sandbox_id', reason: `sandbox ID ${describe(id)} is not a valid ID` };
  }
  if (portText === '') return { kind: 'malformed', code: 'invalid_path', reason: `path ${describe(path)} names no port`, sandboxId: id };
  const port = parsePort(portText);
  if (port === undefined) {
    return {
      kind: 'malformed',
      code: 'invalid_sandbox_port',
      reason: `sandbox port ${describe(portText)} is not a number from 1 to 65535`,
      sandboxId: id,
    };
  }
  const rest = path.slice(portEnd);
  return { kind: 'named', sandboxId: id, port, path: rest.startsWith('/') ? rest : `/${rest}` };
}

function namespaceAllowed(namespace: string, options: AgentSandboxIdentifyOptions): boolean {
  if (options.namespaces.length === 0) return namespace === options.defaultNamespace;
  return options.namespaces.includes(namespace) || options.namespaces.includes('*');
}

function fromHeaders(id: string, portText: string | undefined, options: IdentifyOptions): Identification {
  if (!isValidSandboxId(id)) {
    return { kind: 'malformed', code: 'invalid_sandbox_id', reason: `sandbox ID ${describe(id)} is not a valid ID` };
  }
  if (portText === undefined || portText === '') return { kind: 'named', sandboxId: id, port: options.defaultPort };
  const port = parsePort(portText);
  if (port === undefined) {
    return {
      kind: 'malformed',
      code: 'invalid_sandbox_port',
      reason: `sandbox port ${describe(portText)} is not a number from 1 to 65535`,
      sandboxId: id,
    };
  }
  return { kind: 'named', sandboxId: id, port };
}

/**
 * The host form names the sandbox in the first DNS label, `<port>-<id>`, so IDs containing '.' can be
 * named only by header; hosts are case-insensitive, so IDs are matched in lower case. A trailing dot
 * (an absolute FQDN) names the same host.
 */
function fromHost(authority: string, options: IdentifyOptions): Identification {
  let host = asciiLowerCase(stripPort(authority));
  if (host.endsWith('.')) host = host.slice(0, -1);
  const dot = host.indexOf('.');
  if (dot <= 0) return NONE;
  const domain = host.slice(dot + 1);
  if (options.domains.length > 0 && !options.domains.includes(domain)) return NONE;
  const match = HOST_LABEL_PATTERN.exec(host.slice(0, dot));
  if (match === null) {
    // Under a configured sandbox domain every host must name a sandbox; elsewhere it simply does not.
    if (options.domains.length === 0) return NONE;
    return { kind: 'malformed', code: 'invalid_host', reason: `host ${describe(host)} is not <port>-<sandboxID>.${domain}` };
  }
  const [, portText, id] = match as unknown as [string, string, string];
  const port = parsePort(portText);
  if (port === undefined) {
    return { kind: 'malformed', code: 'invalid_sandbox_port', reason: `host port ${describe(portText)} is not a number from 1 to 65535` };
  }
  if (!isValidSandboxId(id)) {
    return { kind: 'malformed', code: 'invalid_sandbox_id', reason: `host sandbox ID ${describe(id)} is not a valid ID` };
  }
  return { kind: 'named', sandboxId: id, port };
}

/**
 * Lower-cases ASCII letters only. String#toLowerCase folds Unicode too (KELVIN SIGN U+212A becomes 'k'),
 * which would let a host that is not the sandbox's name reach it; non-ASCII characters are left as
 * they are and then fail the ID and domain checks.
 */
function asciiLowerCase(text: string): string {
  // Stryker disable next-line Regex: equivalent; the test only spares hosts without capitals a replace that would change nothing
  return /[A-Z]/.test(text) ? text.replace(/[A-Z]/g, (c) => String.fromCharCode(c.charCodeAt(0) + 32)) : text;
}

/** Drops a trailing `:port` (and IPv6 brackets never name a sandbox, so they fall through as none). */
function stripPort(authority: string): string {
  const colon = authority.lastIndexOf(':');
  return colon === -1 || authority.includes(']') ? authority : authority.slice(0, colon);
}

/** Quotes a client value for an error message, bounded so a huge header cannot bloat the answer. */
export function describe(value: string): string {
  const shown = value.length > 64 ? `${value.slice(0, 64)}...` : value;
  return JSON.stringify(shown);
}
