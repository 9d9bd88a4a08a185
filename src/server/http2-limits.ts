// Node's HTTP/2 "rapid reset" guard (CVE-2023-44487) closes a connection with GOAWAY once its peer has
// reset more than a burst of streams plus a rate per second (1,000 and 33 by default). Envoy ends
// every ext_proc stream with RST_STREAM once its HTTP request is done, so with the defaults an Envoy
// connection dies after about 1,000 ordinary requests, failing every request held on it (500s).
//
// grpc-js creates its HTTP/2 servers itself and passes no reset options through, so the limits are
// applied by running the server's creation inside withStreamResetLimits(), which wraps both
// http2.createServer and http2.createSecureServer (grpc-js uses the latter for TLS) for exactly that
// call, at wiring, per listener. Each listener gets the limits its peers deserve (grpc-server.ts).
import http2 from 'node:http2';

export interface StreamResetLimits {
  /** Resets accepted at once before the rate applies. */
  readonly burst: number;
  /** Resets per second accepted after the burst. */
  readonly perSecond: number;
}

/** For peers that authenticated (mTLS) or can only be local (loopback, a Unix socket): no practical limit. */
export const TRUSTED_PEER_LIMITS: StreamResetLimits = { burst: 1_000_000_000, perSecond: 1_000_000_000 };

type Create = (...args: unknown[]) => unknown;

/** Runs `create` (which must create its HTTP/2 server synchronously) with `limits` applied to it. */
export function withStreamResetLimits<T>(limits: StreamResetLimits, create: () => T): T {
  const module = http2 as unknown as { createServer: Create; createSecureServer: Create };
  const { createServer, createSecureServer } = module;
  const withLimits =
    (original: Create): Create =>
    (options: unknown, ...rest: unknown[]) =>
      original({ ...(options as object), streamResetBurst: limits.burst, streamResetRate: limits.perSecond }, ...rest);
  module.createServer = withLimits(createServer);
  module.createSecureServer = withLimits(createSecureServer);
  try {
    return create();
  } finally {
    module.createServer = createServer;
    module.createSecureServer = createSecureServer;
  }
}
