// Free loopback ports for processes that cannot report the port they bound (etcd, kube-apiserver, the
// controllers' probe and memberlist ports).
//
// A port is drawn below the kernel's ephemeral range (Linux: 32768-60999): a port the kernel handed
// out with listen(0) and we then closed goes back into the pool every outgoing connection on the
// machine draws from, and under load (parallel suites, other engineers' runs) one of them takes it
// before our process binds it. Below that range only another explicit bind can, and a random draw
// that is checked free makes that unlikely.
import { createServer } from 'node:net';

const LOW = 20_000;
const HIGH = 32_000;
const handedOut = new Set<number>();

export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const port = LOW + Math.floor(Math.random() * (HIGH - LOW));
    if (handedOut.has(port)) continue;
    if (await bindable(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free loopback port in ${LOW}-${HIGH} after 50 draws`);
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
}
