// OpenKruise agents' sandbox-manager (its E2B API), built by scripts/provision.sh with the controller,
// run against the test control plane the way E2B clients reach it: POST /sandboxes claims a member of
// a SandboxSet pool, writes E2B's timers (autoPause: pauseTime = now + timeout and shutdownTime =
// pauseTime + the paused retention; otherwise shutdownTime = now + timeout) and, with
// --enable-short-sandbox-id, the short `agents.kruise.io/sandbox-id` label; DELETE /sandboxes/<id>
// recycles a member whose pool enabled cleanup. Nothing else assigns that label: tests that need a
// sandbox ID the way E2B clients get one get it here.
//
// It runs without Redis or MySQL (E2B auth off, keys unused). Two of its listeners have fixed ports
// (the ext-proc gRPC server on :9002 and its route-refresh server on :7789, both on every address), so
// two managers on one machine cannot run at once: each holds a lock file for its whole life (flock,
// without forking, so the lock is the manager's own and goes with it), and a second one waits for it
// (up to LOCK_WAIT_S, then it fails saying so: flock exits 1).
import { join } from 'node:path';
import type { ControlPlane } from './controlplane.ts';
import { freePort } from './ports.ts';
import { TestProcess } from './process.ts';
import { toolPath } from './tools.ts';

const SYSTEM_NAMESPACE = 'sandbox-system';
const PORT_LOCK = '/tmp/sandbox-extproc-sandbox-manager.lock';
const LOCK_WAIT_S = 90;

/** What POST /sandboxes takes (the fields tests use), as E2B's SDKs send it. */
export interface E2BCreate {
  /** The SandboxSet (pool) to claim from. */
  readonly templateID: string;
  /** Seconds (E2B's floor is 30). */
  readonly timeout?: number;
  readonly autoPause?: boolean;
  /** E2B metadata; `e2b.agents.kruise.io/...` keys are sandbox-manager's extensions. */
  readonly metadata?: Record<string, string>;
}

export interface E2BSandbox {
  readonly sandboxID: string;
  readonly templateID: string;
}

export class SandboxManager {
  readonly process: TestProcess;
  readonly url: string;

  private constructor(process: TestProcess, url: string) {
    this.process = process;
    this.url = url;
  }

  /**
   * Starts sandbox-manager for the sandboxes of one namespace. It claims from what its cache holds, so
   * start it once the pools it is to claim from have members (its initial list then includes them).
   */
  static async start(plane: ControlPlane, namespace: string): Promise<SandboxManager> {
    await plane.ensureNamespace(SYSTEM_NAMESPACE);
    const port = await freePort();
    const child = new TestProcess(
      'sandbox-manager',
      'flock',
      [
        '--no-fork',
        '--timeout',
        String(LOCK_WAIT_S),
        PORT_LOCK,
        join(toolPath('SBX_OPENKRUISE'), 'bin', 'sandbox-manager'),
        `--port=${port}`,
        `--memberlist-bind-port=${await freePort()}`,
        `--system-namespace=${SYSTEM_NAMESPACE}`,
        '--peer-selector=app=none',
        `--sandbox-namespace=${namespace}`,
        '--e2b-enable-auth=false',
        '--enable-short-sandbox-id',
      ],
      // It reads its kubeconfig from KUBECONFIG (its --kubeconfig flag is not used for its client).
      { env: { ...process.env, KUBECONFIG: plane.adminKubeconfig, POD_IP: '127.0.0.1', POD_NAME: 'sandbox-manager-0' } },
    );
    const manager = new SandboxManager(child, `http://127.0.0.1:${port}`);
    try {
      // Its caches have synced and its API listens.
      await child.waitForLine(/"msg":"Starting Server"/, (LOCK_WAIT_S + 30) * 1000);
    } catch (error) {
      await child.stop();
      throw error;
    }
    return manager;
  }

  /** POST /sandboxes: claims a pool member for an E2B client; rejects unless 201. */
  async create(request: E2BCreate): Promise<E2BSandbox> {
    const res = await fetch(`${this.url}/sandboxes`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(request),
    });
    const body = await res.text();
    if (res.status !== 201) throw new Error(`sandbox-manager: POST /sandboxes answered ${res.status}: ${body}`);
    return JSON.parse(body) as E2BSandbox;
  }

  /** DELETE /sandboxes/<id>: recycles the sandbox when its pool enabled cleanup, else deletes it. */
  async kill(sandboxID: string): Promise<void> {
    const res = await fetch(`${this.url}/sandboxes/${sandboxID}`, { method: 'DELETE' });
    if (res.status >= 300) throw new Error(`sandbox-manager: DELETE /sandboxes/${sandboxID} answered ${res.status}: ${await res.text()}`);
  }

  stop(): Promise<void> {
    return this.process.stop();
  }
}
