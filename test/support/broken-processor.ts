// Fault stand-ins for the service, to prove Envoy fails closed: an ext_proc server that fails every
// stream, and one that never answers. Neither is a substitute for sandbox-extproc in any other test.
import { Server, ServerCredentials, status, type ServerDuplexStream } from '@grpc/grpc-js';
import { processDefinition } from './raw-processor.ts';

export async function startBrokenProcessor(behaviour: 'fail' | 'silent'): Promise<{ port: number; stop(): void }> {
  const server = new Server();
  server.addService(processDefinition(), {
    Process: (call: ServerDuplexStream<Buffer, Buffer>) => {
      call.on('error', () => undefined);
      if (behaviour === 'fail') call.on('data', () => call.emit('error', { code: status.INTERNAL, details: 'injected failure' }));
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
  );
  return { port, stop: () => server.forceShutdown() };
}
