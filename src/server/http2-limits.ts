// Envoy ends every ext_proc stream with RST_STREAM once its HTTP request is done. Node's HTTP/2 server
// counts those against its "rapid reset" (CVE-2023-44487) limit, 1,000 resets plus 33 a second, and
// then closes the whole connection with GOAWAY, killing every stream on it: a request held by a wake
// fails with 500 after about 1,000 ordinary requests. The peer here is our own Envoy, so the limit is
// raised to match its traffic; --max-streams still bounds concurrency. grpc-js does not pass these
// options through, so http2.createServer is wrapped once, for this process's gRPC servers.
import http2 from 'node:http2';

const RESETS_PER_SECOND = 1_000_000;
let installed = false;

export function allowEnvoyStreamResets(): void {
  if (installed) return;
  installed = true;
  const createServer = http2.createServer;
  const wrapped = (options: http2.ServerOptions = {}, ...rest: unknown[]) =>
    (createServer as (...args: unknown[]) => http2.Http2Server)(
      { streamResetBurst: RESETS_PER_SECOND, streamResetRate: RESETS_PER_SECOND, ...options },
      ...rest,
    );
  (http2 as { createServer: unknown }).createServer = wrapped;
}
