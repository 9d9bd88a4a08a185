// The floor to compare against: a bare @grpc/grpc-js server on the ext_proc path that answers every
// message with a fixed reply (hex in argv[2], else an empty request_headers answer) and does nothing
// else. The gap between it and sandbox-extproc is what the service's own code costs per request.
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
server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (error, port) => {
  if (error) throw error;
  console.log(JSON.stringify({ msg: 'bare grpc server listening', grpcPort: port }));
});
