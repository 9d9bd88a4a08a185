// Reads the header list once into the few facts the core needs. Envoy sends lower-case keys and the
// value in raw_value (bytes) since 1.27; older senders use value.
import type { HeaderValue } from './messages.ts';

export interface RequestFacts {
  authority: string | undefined;
  /** :path, decoded byte for byte (latin1), so a rewrite of it returns the very bytes the client sent. */
  path: string | undefined;
  sandboxId: string | undefined;
  sandboxPort: string | undefined;
  agentSandboxId: string | undefined;
  agentSandboxNamespace: string | undefined;
  agentSandboxPort: string | undefined;
  /** x-sandbox-pod-ip: checked as agent-sandbox's router checks it, never used to route. */
  agentSandboxPodIP: string | undefined;
  /** Authorization (agent-sandbox convention only): the Bearer token of its router's --authz-mode. */
  authorization: string | undefined;
  accessToken: string | undefined;
  /** The traffic access token (a JWT; OpenKruise's e2b-traffic-access-token), when its header is named. */
  trafficToken: string | undefined;
  requestId: string | undefined;
}

export interface FactNames {
  readonly sandboxIdHeader: string;
  readonly sandboxPortHeader: string;
  /** Read agent-sandbox's x-sandbox-id / x-sandbox-namespace / x-sandbox-port too. */
  readonly agentSandbox?: boolean;
  /** Header carrying the traffic access token (JWT); unset: not read. */
  readonly trafficTokenHeader?: string;
}

const ACCESS_TOKEN = 'x-access-token';
const REQUEST_ID = 'x-request-id';
const AGENT_ID = 'x-sandbox-id';
const AGENT_NAMESPACE = 'x-sandbox-namespace';
const AGENT_PORT = 'x-sandbox-port';
const AGENT_POD_IP = 'x-sandbox-pod-ip';
const AUTHORIZATION = 'authorization';

function valueOf(header: HeaderValue): string {
  const raw = header.raw_value;
  return raw !== undefined && raw.length > 0 ? raw.toString('utf8') : (header.value ?? '');
}

function pathOf(header: HeaderValue): string {
  const raw = header.raw_value;
  return raw !== undefined && raw.length > 0 ? raw.toString('latin1') : (header.value ?? '');
}

/** A header sent twice is joined with ',' as HTTP does, so a repeated ID fails validation, never picks one. */
function join(held: string | undefined, next: string): string {
  return held === undefined ? next : `${held},${next}`;
}

/**
 * Every header name readFacts reads with these names: the request path's reader (request-reader.ts)
 * keeps these headers and drops the others unread.
 */
export function factHeaderNames(names: FactNames): string[] {
  const read = [':authority', 'host', ':path', names.sandboxIdHeader, names.sandboxPortHeader, ACCESS_TOKEN, REQUEST_ID];
  if (names.trafficTokenHeader !== undefined) read.push(names.trafficTokenHeader);
  if (names.agentSandbox === true) read.push(AGENT_ID, AGENT_NAMESPACE, AGENT_PORT, AGENT_POD_IP, AUTHORIZATION);
  return read;
}

export function readFacts(headers: readonly HeaderValue[] | undefined, names: FactNames): RequestFacts {
  const facts: RequestFacts = {
    authority: undefined,
    sandboxId: undefined,
    sandboxPort: undefined,
    agentSandboxId: undefined,
    agentSandboxNamespace: undefined,
    agentSandboxPort: undefined,
    agentSandboxPodIP: undefined,
    authorization: undefined,
    path: undefined,
    accessToken: undefined,
    trafficToken: undefined,
    requestId: undefined,
  };
  if (headers === undefined) return facts;
  // Two loops rather than one with a flag: the E2B-only scan, the common case, stays as short as it was.
  if (names.agentSandbox === true) return readWithAgentSandbox(headers, names, facts);
  for (const header of headers) {
    const key = header.key;
    if (key === ':authority' || key === 'host') facts.authority ??= valueOf(header);
    else if (key === ':path') facts.path ??= pathOf(header);
    else if (key === names.sandboxIdHeader) facts.sandboxId = join(facts.sandboxId, valueOf(header));
    else if (key === names.sandboxPortHeader) facts.sandboxPort = join(facts.sandboxPort, valueOf(header));
    else if (key === ACCESS_TOKEN) facts.accessToken = join(facts.accessToken, valueOf(header));
    else if (key === names.trafficTokenHeader) facts.trafficToken = join(facts.trafficToken, valueOf(header));
    else if (key === REQUEST_ID) facts.requestId ??= valueOf(header);
  }
  return facts;
}

/**
 * The same scan, also reading agent-sandbox's routing headers and Authorization. x-sandbox-pod-ip is read
 * only to be checked (its router refuses a malformed one), x-sandbox-uid not at all: clients never pick
 * the upstream.
 */
function readWithAgentSandbox(headers: readonly HeaderValue[], names: FactNames, facts: RequestFacts): RequestFacts {
  for (const header of headers) {
    const key = header.key;
    if (key === ':authority' || key === 'host') facts.authority ??= valueOf(header);
    else if (key === ':path') facts.path ??= pathOf(header);
    else if (key === names.sandboxIdHeader) facts.sandboxId = join(facts.sandboxId, valueOf(header));
    else if (key === names.sandboxPortHeader) facts.sandboxPort = join(facts.sandboxPort, valueOf(header));
    else if (key === ACCESS_TOKEN) facts.accessToken = join(facts.accessToken, valueOf(header));
    else if (key === names.trafficTokenHeader) facts.trafficToken = join(facts.trafficToken, valueOf(header));
    else if (key === REQUEST_ID) facts.requestId ??= valueOf(header);
    else if (key === AGENT_ID) facts.agentSandboxId = join(facts.agentSandboxId, valueOf(header));
    else if (key === AGENT_NAMESPACE) facts.agentSandboxNamespace = join(facts.agentSandboxNamespace, valueOf(header));
    else if (key === AGENT_PORT) facts.agentSandboxPort = join(facts.agentSandboxPort, valueOf(header));
    else if (key === AGENT_POD_IP) facts.agentSandboxPodIP = join(facts.agentSandboxPodIP, valueOf(header));
    else if (key === AUTHORIZATION) facts.authorization = join(facts.authorization, valueOf(header));
  }
  return facts;
}
