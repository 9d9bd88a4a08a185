// The floor to compare against: a bare @grpc/grpc-js server on the ext_proc path that answers every
// message with a fixed reply (hex in argv[2], else an empty request_headers answer) and does nothing
// else: what a server on the most used gRPC library costs, beside the service (which serves gRPC on
// Node's own HTTP/2). Node's HTTP/2 rapid-reset guard is lifted for this loopback peer, as the service
// lifts it, or Envoy's reset of every finished stream would close its connection: grpc-js passes no
// such option, so its HTTP/2 server is created (synchronously, by createConnectionInjector) with
// http2.createServer wrapped for that one call.
import http2 from 'node:http2';
import { createServer } from 'node:net';
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { processDefinition } from '../support/raw-processor.ts';
const reply = process.argv[2] ? Buffer.from(process.argv[2], 'hex') : Buffer.from([0x0a, 0x02, 0x0a, 0x00]);

const server = new Server({ 'grpc.max_concurrent_streams': 10_000 });
server.addService(processDefinition(), {
  Process: (call: ServerDuplexStream<Buffer, Buffer>) => {
    call.on('data', () => call.write(reply));
    call.on('end', () => call.end());
    call.on('error', () => undefined);
  },
});
type Create = (...args: unknown[]) => unknown;
const module = http2 as unknown as { createServer: Create };
const original = module.createServer;
module.createServer = (options: unknown, ...rest: unknown[]) =>
  original({ ...(options as object), streamResetBurst: 1_000_000_000, streamResetRate: 1_000_000_000 }, ...rest);
const injector = server.createConnectionInjector(ServerCredentials.createInsecure());
module.createServer = original;
const listener = createServer((socket) => injector.injectConnection(socket));
listener.listen(0, '127.0.0.1', () => {
  const address = listener.address();
  console.log(JSON.stringify({ msg: 'bare grpc server listening', grpcPort: typeof address === 'object' && address ? address.port : 0 }));
});
