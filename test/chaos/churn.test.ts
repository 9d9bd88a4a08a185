// Chaos (npm run test:chaos): 1,000 sandboxes created, paused and deleted while traffic flows, with
// pod IPs drawn from a small shared pool and reused. Each stand-in pod knows, at every moment, which
// sandbox owns its IP (ownership starts when the sandbox is given the IP and ends when its pod goes
// away); a request that reaches an IP owned by another sandbox is a violation. An IP is handed out again
// only after the service has seen it released plus a short quarantine, as a CNI recycles an address only
// after the old pod is torn down: a request already forwarded cannot be recalled by any proxy, so the
// quarantine covers requests in flight; a request reaching an IP nobody owns is answered as a refused
// connection would be.
// Bounded: 1,000 sandboxes, 16 traffic workers, on loopback only.
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlPlane } from '../support/controlplane.ts';
import { startEnvoy, type RunningEnvoy } from '../support/envoy.ts';
import { waitForRoute } from '../support/registry-events.ts';
import { pausedStatus, SandboxController } from '../support/sandbox-controller.ts';
import { startService, type RunningService } from '../support/service.ts';

const NS = 'churn';
const TOTAL = 1000;
const LIVE = 24;
const IPS = Array.from({ length: 32 }, (_, i) => `127.0.2.${i + 1}`);
/** How long a released IP stays unused (old pod teardown); far longer than a loopback request's flight. */
const QUARANTINE_MS = 250;

let plane: ControlPlane;
let controller: SandboxController;
let service: RunningService;
let envoy: RunningEnvoy;
const servers: Server[] = [];
let port = 0;
/** ip -> the sandbox ID that owns it now, if any. */
const owner = new Map<string, string>();
const tally = { served: 0, wrongOwner: 0, unowned: 0, answeredByService: 0, other: 0 };
/** Resolvers waiting for a sandbox to have been served. */
const servedWaiters = new Map<string, () => void>();

beforeAll(async () => {
  plane = await ControlPlane.start();
  await plane.ensureNamespace(NS);
  const kubeconfig = await plane.serviceIdentity('sandbox-extproc', [NS]);
  controller = new SandboxController(plane.admin);
  for (const ip of IPS) {
    const server = createServer((req, res) => {
      const named = String(req.headers['e2b-sandbox-id']);
      const current = owner.get(ip);
      if (current === undefined) {
        // The pod that had this IP is gone: in a cluster the connection would be refused.
        tally.unowned += 1;
        res.writeHead(503, { 'x-stand-in': 'no-pod' }).end();
      } else if (current !== named) {
        tally.wrongOwner += 1;
        res.writeHead(200).end('wrong');
      } else {
        tally.served += 1;
        servedWaiters.get(named)?.();
        res.writeHead(200).end('ok');
      }
    });
    await new Promise<void>((resolve) => server.listen(port, ip, resolve));
    port = (server.address() as AddressInfo).port;
    servers.push(server);
  }
  service = await startService(['--kubeconfig', kubeconfig, '--namespaces', NS, '--wake', 'false']);
  envoy = await startEnvoy({ extprocPort: service.listening.grpcPort as number });
});

afterAll(async () => {
  await envoy?.stop();
  await service?.stop();
  for (const s of servers) s.close();
  await plane?.stop();
});

function hit(id: string): Promise<void> {
  return new Promise((resolve) => {
    const req = request(`${envoy.url}/`, { headers: { 'e2b-sandbox-id': id, 'e2b-sandbox-port': String(port) }, agent: false }, (res) => {
      if (res.headers['x-stand-in'] === undefined && (res.statusCode === 502 || res.statusCode === 503)) tally.answeredByService += 1;
      else if (res.statusCode !== 200 && res.headers['x-stand-in'] === undefined) tally.other += 1;
      res.resume();
      res.on('end', () => resolve());
    });
    req.on('error', () => {
      tally.other += 1;
      resolve();
    });
    req.end();
  });
}

describe('churn of 1,000 sandboxes under traffic', () => {
  it('never delivers a request to an IP another sandbox owns', async () => {
    const free = [...IPS];
    const ipFreed: (() => void)[] = [];
    const takeIP = async (): Promise<string> => {
      while (free.length === 0) await new Promise<void>((resolve) => ipFreed.push(resolve));
      return free.shift() as string;
    };
    const releaseIP = (ip: string) => {
      setTimeout(() => {
        free.push(ip);
        ipFreed.shift()?.();
      }, QUARANTINE_MS);
    };
    const live = new Set<string>();
    const gone: string[] = [];
    let created = 0;
    let stopTraffic = false;

    const traffic = Promise.all(
      Array.from({ length: 16 }, async () => {
        while (!stopTraffic) {
          // Mostly live sandboxes; one request in ten to one that is paused or gone.
          const pool = Math.random() < 0.9 && live.size > 0 ? [...live] : gone;
          await hit(pool[Math.floor(Math.random() * pool.length)] ?? `${NS}--none`);
        }
      }),
    );

    const lifecycle = async (n: number) => {
      const name = `s${n}`;
      const id = `${NS}--${name}`;
      const ip = await takeIP();
      owner.set(ip, id);
      const served = new Promise<void>((resolve) => servedWaiters.set(id, resolve));
      await controller.create({ namespace: NS, name, podIP: ip });
      await waitForRoute(service.app.registry, id, (r) => r?.state === 'running' && r.podIP === ip, 30_000);
      live.add(id);
      // It lives until traffic has reached it (with a deadline), then goes.
      await Promise.race([served, new Promise((resolve) => setTimeout(resolve, 2000))]);
      servedWaiters.delete(id);
      live.delete(id);
      gone.push(id);
      if (n % 2 === 0) {
        // Pause: the pod goes away, then the status says so.
        owner.delete(ip);
        await controller.setStatus(NS, name, pausedStatus());
        await waitForRoute(service.app.registry, id, (r) => r?.state !== 'running', 30_000);
        releaseIP(ip);
        await controller.delete(NS, name);
      } else {
        // Delete while running.
        owner.delete(ip);
        await controller.delete(NS, name);
        await waitForRoute(service.app.registry, id, (r) => r === undefined, 30_000);
        releaseIP(ip);
      }
    };

    await Promise.all(
      Array.from({ length: LIVE }, async () => {
        while (created < TOTAL) await lifecycle(created++);
      }),
    );
    stopTraffic = true;
    await traffic;
    console.log(JSON.stringify({ chaos: 'churn', sandboxes: TOTAL, ...tally }));
    expect(tally.wrongOwner).toBe(0);
    // Every sandbox was reached by traffic at least once while it owned its IP.
    expect(tally.served).toBeGreaterThanOrEqual(TOTAL);
    expect(tally.other).toBe(0);
  });
});
