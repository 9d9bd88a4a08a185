// Reads the header list once into the few facts the core needs. Envoy sends lower-case keys and the
// value in raw_value (bytes) since 1.27; older senders use value.
import type { HeaderValue } from './messages.ts';

export interface RequestFacts {
  authority: string | undefined;
  sandboxId: string | undefined;
  sandboxPort: string | undefined;
  accessToken: string | undefined;
  requestId: string | undefined;
}

export interface FactNames {
  readonly sandboxIdHeader: string;
  readonly sandboxPortHeader: string;
}

const ACCESS_TOKEN = 'x-access-token';
const REQUEST_ID = 'x-request-id';

function valueOf(header: HeaderValue): string {
  const raw = header.raw_value;
  return raw !== undefined && raw.length > 0 ? raw.toString('utf8') : (header.value ?? '');
}

/** A header sent twice is joined with ',' as HTTP does, so a repeated ID fails validation, never picks one. */
function join(held: string | undefined, next: string): string {
  return held === undefined ? next : `${held},${next}`;
}

export function readFacts(headers: readonly HeaderValue[] | undefined, names: FactNames): RequestFacts {
  const facts: RequestFacts = {
    authority: undefined,
    sandboxId: undefined,
    sandboxPort: undefined,
    accessToken: undefined,
    requestId: undefined,
  };
  if (headers === undefined) return facts;
  for (const header of headers) {
    const key = header.key;
    if (key === ':authority' || key === 'host') facts.authority ??= valueOf(header);
    else if (key === names.sandboxIdHeader) facts.sandboxId = join(facts.sandboxId, valueOf(header));
    else if (key === names.sandboxPortHeader) facts.sandboxPort = join(facts.sandboxPort, valueOf(header));
    else if (key === ACCESS_TOKEN) facts.accessToken = join(facts.accessToken, valueOf(header));
    else if (key === REQUEST_ID) facts.requestId ??= valueOf(header);
  }
  return facts;
}
