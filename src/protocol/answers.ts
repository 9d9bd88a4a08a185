// Every wire answer the service sends, built in one place. A forward answer depends only on a route
// and a port, so it is encoded once and cached against the (immutable) Route object: a request to a
// running sandbox costs one WeakMap lookup and no encoding. The client picks the port, so the cache
// holds at most two ports per route (the default one, and the last other one asked for); any other
// port is encoded per request. Memory is thus bounded by the route table, never by what clients ask.
import { ERRORS, type ErrorCode, type ErrorSpec } from '../core/errors.ts';
import { E2B_DEFAULT_PORT } from '../identification/identify.ts';
import type { Route } from '../routes/route.ts';
import type { HeaderMutation, ProcessingResponse, RequestKind, StructValue } from './messages.ts';
import { encodeResponse } from './proto.ts';

export interface AnswerOptions {
  /** Dynamic metadata namespace and key the ORIGINAL_DST cluster reads ("envoy.lb.original_dst", "host"). */
  readonly metadataNamespace: string;
  readonly metadataKey: string;
  /** Headers a client might use to steer Envoy; removed from every request that continues. */
  readonly strippedHeaders: readonly string[];
  /** The port a request gets when it names none, the one most requests use (default: E2B's). */
  readonly defaultPort?: number;
  /**
   * The agent-sandbox convention is on: error bodies also carry its router's `detail` (its SDKs show
   * it), and forwards to its Sandboxes drop these headers too (Authorization: the router consumes it, so
   * a sandbox can never present its caller's credential to the Kubernetes API).
   */
  readonly agentSandbox?: { readonly strippedHeaders: readonly string[] };
}

/** Namespace of the metadata the access log can show (sandbox ID, decision). */
export const LOG_METADATA_NAMESPACE = 'sandbox-extproc';
/**
 * Metadata key holding a wake's duration in ms. Envoy turns it into the response header
 * x-sandbox-wake-ms (response_headers_to_add in envoy/envoy.yaml), since a headers-only processor
 * never sees the response.
 */
export const WAKE_MS_KEY = 'wake_ms';
/**
 * Metadata key holding the UID of the object a request was sent to: access log entries bring it back,
 * so activity is credited to that very object even if its sandbox ID has moved on since.
 */
export const SANDBOX_UID_KEY = 'sandbox_uid';
/** Metadata key holding an agent-sandbox Sandbox's name (envoy/envoy.yaml's local reply names it). */
export const SANDBOX_NAME_KEY = 'sandbox_name';

const str = (value: string) => ({ stringValue: value });

export interface ErrorAnswer {
  readonly code: ErrorCode;
  readonly sandboxId?: string | undefined;
  readonly reason?: string | undefined;
  /** Overrides the catalogue's Retry-After (seconds), e.g. the time left of a remembered failure. */
  readonly retryAfter?: number | undefined;
  /** The router's `detail` for this very answer (identification's word for a malformed request). */
  readonly detail?: string | undefined;
}

/** A route's prepared forward answers: the default port's, and the last other port's. */
interface PreparedForwards {
  defaultAnswer: Buffer | undefined;
  otherPort: number;
  otherAnswer: Buffer | undefined;
}

export class Answers {
  readonly #options: AnswerOptions;
  readonly #forward = new WeakMap<Route, PreparedForwards>();
  readonly #defaultPort: number;
  readonly #strip: HeaderMutation;
  /** agent-sandbox Sandboxes' forwards: #strip and the convention's own. */
  readonly #agentStrip: HeaderMutation;
  readonly #details: boolean;
  readonly pass: Buffer;
  /** agent-sandbox's router health answer: 200 {"status":"ok"}. */
  readonly health: Buffer;
  readonly #continueFor: Record<RequestKind, Buffer>;

  constructor(options: AnswerOptions) {
    this.#options = options;
    this.#defaultPort = options.defaultPort ?? E2B_DEFAULT_PORT;
    this.#strip = { remove_headers: [...options.strippedHeaders] };
    this.#agentStrip = { remove_headers: [...new Set([...options.strippedHeaders, ...(options.agentSandbox?.strippedHeaders ?? [])])] };
    this.#details = options.agentSandbox !== undefined;
    this.pass = encodeResponse({ request_headers: { response: { header_mutation: this.#strip } } });
    this.health = encodeResponse({
      immediate_response: {
        status: { code: 200 },
        headers: { set_headers: [{ header: { key: 'content-type', raw_value: Buffer.from('application/json') } }] },
        body: Buffer.from('{"status":"ok"}'),
        details: 'sandbox_extproc_healthz',
      },
    });
    const empty = { response: {} };
    this.#continueFor = {
      request_headers: this.pass,
      response_headers: encodeResponse({ response_headers: empty }),
      request_body: encodeResponse({ request_body: empty }),
      response_body: encodeResponse({ response_body: empty }),
      request_trailers: encodeResponse({ request_trailers: {} }),
      response_trailers: encodeResponse({ response_trailers: {} }),
    };
  }

  /**
   * Continue to the sandbox: the upstream goes in dynamic metadata, never in a header a client could
   * forge. `path`, when given, replaces the request's :path (OpenKruise's /kruise/<id>/<port>/<rest>
   * form reaches the sandbox as /<rest>); such answers are made per request, never cached.
   */
  forward(route: Route, port: number, path?: string): Buffer {
    if (path !== undefined) return encodeResponse(this.#forwardMessage(route, port, undefined, path));
    let prepared = this.#forward.get(route);
    if (prepared === undefined) {
      prepared = { defaultAnswer: undefined, otherPort: 0, otherAnswer: undefined };
      this.#forward.set(route, prepared);
    }
    if (port === this.#defaultPort) {
      return (prepared.defaultAnswer ??= encodeResponse(this.#forwardMessage(route, port, undefined)));
    }
    if (prepared.otherPort !== port || prepared.otherAnswer === undefined) {
      prepared.otherPort = port;
      prepared.otherAnswer = encodeResponse(this.#forwardMessage(route, port, undefined));
    }
    return prepared.otherAnswer;
  }

  /** Continue to a sandbox that was just woken, telling the client how long the wake took. */
  forwardAfterWake(route: Route, port: number, wakeMs: number, path?: string): Buffer {
    return encodeResponse(this.#forwardMessage(route, port, wakeMs, path));
  }

  /** The harmless reply to a message the processor did not ask for. */
  continueFor(kind: RequestKind): Buffer {
    return this.#continueFor[kind];
  }

  /** Extends Envoy's per-message timer while a wake holds the request (sent alone, before the answer). */
  overrideTimeout(ms: number): Buffer {
    return encodeResponse({ override_message_timeout: { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 } });
  }

  /** Answer in place of the upstream: E2B-compatible status, a JSON body, and details for the access log. */
  error(answer: ErrorAnswer): Buffer {
    const spec: ErrorSpec = ERRORS[answer.code];
    const message = messageFor(spec, answer.sandboxId, answer.reason);
    const body = JSON.stringify({
      ...(this.#details ? { detail: answer.detail ?? routerDetail(spec, answer.sandboxId, message) } : {}),
      error: answer.code,
      message,
      // Stryker disable next-line ConditionalExpression: equivalent; JSON.stringify drops an undefined sandboxId
      ...(answer.sandboxId === undefined ? {} : { sandboxId: answer.sandboxId }),
    });
    const headers = [{ header: { key: 'content-type', raw_value: Buffer.from('application/json') } }];
    const retryAfter = answer.retryAfter ?? spec.retryAfter;
    if (retryAfter !== undefined) headers.push({ header: { key: 'retry-after', raw_value: Buffer.from(String(retryAfter)) } });
    const response: ProcessingResponse = {
      immediate_response: {
        status: { code: spec.status },
        headers: { set_headers: headers },
        body: Buffer.from(body),
        // Envoy's response code details may not contain spaces.
        details: `sandbox_extproc_${answer.code}`,
      },
      dynamic_metadata: this.#logMetadata(answer.code, answer.sandboxId),
    };
    return encodeResponse(response);
  }

  #forwardMessage(route: Route, port: number, wakeMs: number | undefined, path?: string): ProcessingResponse {
    const { metadataNamespace, metadataKey } = this.#options;
    const upstream = `${route.podIP.includes(':') ? `[${route.podIP}]` : route.podIP}:${port}`;
    const metadata = this.#logMetadata(wakeMs === undefined ? 'forward' : 'wake', route.id, wakeMs, route.uid);
    // agent-sandbox IDs, and only theirs, are <namespace>/<name> (sandbox-kinds/kind.ts). Its router names
    // the sandbox in its 502 when it cannot connect: Envoy's local reply for it reads the name here.
    const agent = route.id.includes('/');
    if (agent)
      (metadata.fields[LOG_METADATA_NAMESPACE] as { structValue: StructValue }).structValue.fields[SANDBOX_NAME_KEY] = str(route.name);
    metadata.fields[metadataNamespace] = { structValue: { fields: { [metadataKey]: str(upstream) } } };
    // Envoy lets an ext_proc set :path by default (only Host, :authority, :scheme and :method need
    // allow_all_routing); no clear_route_cache, so the route already chosen stays.
    const strip = agent ? this.#agentStrip : this.#strip;
    const mutation: HeaderMutation =
      path === undefined ? strip : { ...strip, set_headers: [{ header: { key: ':path', raw_value: Buffer.from(path, 'latin1') } }] };
    return { request_headers: { response: { header_mutation: mutation } }, dynamic_metadata: metadata };
  }

  #logMetadata(decision: string, sandboxId: string | undefined, wakeMs?: number, uid?: string): StructValue {
    const fields: StructValue['fields'] = { decision: str(decision) };
    if (sandboxId !== undefined) fields['sandbox_id'] = str(sandboxId);
    if (uid !== undefined) fields[SANDBOX_UID_KEY] = str(uid);
    if (wakeMs !== undefined) fields[WAKE_MS_KEY] = str(String(Math.round(wakeMs)));
    return { fields: { [LOG_METADATA_NAMESPACE]: { structValue: { fields } } } };
  }
}

/**
 * agent-sandbox's router text for the case, naming the sandbox as it does (its name, not the namespace),
 * or else the message.
 */
function routerDetail(spec: ErrorSpec, sandboxId: string | undefined, message: string): string {
  if (spec.detail === undefined) return message;
  if (spec.routerNamesSandbox !== true || sandboxId === undefined) return spec.detail;
  return `${spec.detail}: ${sandboxId.slice(sandboxId.indexOf('/') + 1)}`;
}

/**
 * The catalogue message, naming the sandbox where the gateway's does ("sandbox not found: <id>": E2B
 * SDKs show clients only the message, and one without the ID sends them hunting), then the reason for
 * this very answer, if any. IDs reach here only once identification has validated them.
 */
function messageFor(spec: ErrorSpec, sandboxId: string | undefined, reason: string | undefined): string {
  const base = spec.namesSandbox === true && sandboxId !== undefined ? `${spec.message}: ${sandboxId}` : spec.message;
  return reason === undefined ? base : `${base} (${reason})`;
}
