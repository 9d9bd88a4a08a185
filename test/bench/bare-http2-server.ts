// The lower floor: Node's own HTTP/2 server answering the ext_proc path with gRPC framing by hand (a
// fixed reply per message, then grpc-status 0), no gRPC library at all. It shows how much of the
// per-stream cost is Node's HTTP/2 itself, below grpc-js. A benchmark reference only.
import { createServer, constants } from 'node:http2';

const message = process.argv[2] ? Buffer.from(process.argv[2], 'hex') : Buffer.from([0x0a, 0x02, 0x0a, 0x00]);
const prefix = Buffer.alloc(5);
prefix.writeUInt32BE(message.length, 1);
const reply = Buffer.concat([prefix, message]);
// Envoy resets every finished stream: Node's rapid-reset guard is lifted for this loopback peer, as
// the service lifts it (src/server/http2-limits.ts), or it would close Envoy's connection.
const server = createServer({
  settings: { maxConcurrentStreams: 10_000 },
  streamResetBurst: 1_000_000_000,
  streamResetRate: 1_000_000_000,
});
server.on('stream', (stream) => {
  stream.respond({ [constants.HTTP2_HEADER_STATUS]: 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
  stream.on('data', () => stream.write(reply));
  stream.on('end', () => stream.end());
  stream.on('error', () => undefined);
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  console.log(JSON.stringify({ msg: 'bare http2 server listening', grpcPort: typeof address === 'object' && address ? address.port : 0 }));
});
