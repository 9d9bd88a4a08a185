// The floor to compare against: a bare @grpc/grpc-js server on the ext_proc path that answers every
// message with a fixed reply (hex in argv[2], else an empty request_headers answer) and does nothing
// else. The gap between it and sandbox-extproc is what the service's own code costs per request. It
// takes its connections the way the service does (a socket handed to grpc-js, with Node's HTTP/2
// rapid-reset guard lifted for this loopback peer), or Envoy's resets would close its connection.
import { createServer } from 'node:net';
import { Server, ServerCredentials, type ServerDuplexStream } from '@grpc/grpc-js';
import { TRUSTED_PEER_LIMITS, withStreamResetLimits } from '../../src/server/http2-limits.ts';
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
const injector = withStreamResetLimits(TRUSTED_PEER_LIMITS, () => server.createConnectionInjector(ServerCredentials.createInsecure()));
const listener = createServer((socket) => injector.injectConnection(socket));
listener.listen(0, '127.0.0.1', () => {
  const address = listener.address();
  console.log(JSON.stringify({ msg: 'bare grpc server listening', grpcPort: typeof address === 'object' && address ? address.port : 0 }));
});
