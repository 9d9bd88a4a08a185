// Writes Sandbox objects to the real API server as fast as it takes them: one HTTP/2 connection with
// the admin client certificate and many concurrent streams. client-node's request path managed ~62
// objects/s here (create + status); this reaches ~400 objects/s (~800 writes/s), where kube-apiserver
// and etcd saturate the machine's two cores. Used by the scale benchmark only.
import { connect, type ClientHttp2Session } from 'node:http2';
import { readFileSync } from 'node:fs';
import type { ControlPlane } from '../support/controlplane.ts';
import { OPENKRUISE } from '../support/sandbox-objects.ts';

/** Which resource the writer writes: OpenKruise's Sandbox unless told otherwise ('' is the core group: Pods). */
export interface WriterTarget {
  readonly group: string;
  readonly version: string;
  readonly plural: string;
}

export class BulkWriter {
  #session: ClientHttp2Session;
  readonly #connect: () => ClientHttp2Session;
  readonly #target: WriterTarget;

  constructor(plane: ControlPlane, target: WriterTarget = OPENKRUISE) {
    this.#target = target;
    const options = {
      ca: readFileSync(plane.certs.caCert),
      cert: readFileSync(plane.certs.adminCert),
      key: readFileSync(plane.certs.adminKey),
    };
    this.#connect = () => {
      const session = connect(plane.url, options);
      // An idle session must not keep the benchmark alive, nor die of an unhandled error.
      session.on('error', () => undefined);
      return session;
    };
    this.#session = this.#connect();
  }

  static path(namespace: string, name = '', subresource = '', target: WriterTarget = OPENKRUISE): string {
    const { group, version, plural } = target;
    const prefix = group === '' ? `/api/${version}` : `/apis/${group}/${version}`;
    return `${prefix}/namespaces/${namespace}/${plural}${name ? `/${name}` : ''}${subresource ? `/${subresource}` : ''}`;
  }

  /** The path of this writer's resource. */
  path(namespace: string, name = '', subresource = ''): string {
    return BulkWriter.path(namespace, name, subresource, this.#target);
  }

  /** Sends one request; resolves with the body when the status is the expected one, rejects otherwise. */
  request(method: string, path: string, body: unknown, expect: number, contentType = 'application/json'): Promise<string> {
    return new Promise((resolve, reject) => {
      // The API server closes a connection left idle for minutes (a 10,000-Sandbox population is waited
      // for without a write): the next request opens a new one.
      if (this.#session.closed || this.#session.destroyed) this.#session = this.#connect();
      const stream = this.#session.request({ ':method': method, ':path': path, 'content-type': contentType, accept: 'application/json' });
      let status = 0;
      const chunks: Buffer[] = [];
      stream.on('response', (headers) => (status = Number(headers[':status'])));
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('error', reject);
      stream.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        if (status === expect) resolve(text);
        else reject(new Error(`${method} ${path}: ${status} ${text.slice(0, 200)}`));
      });
      stream.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }

  create(namespace: string, object: unknown): Promise<string> {
    return this.request('POST', this.path(namespace), object, 201);
  }

  patch(namespace: string, name: string, patch: unknown, subresource = ''): Promise<string> {
    return this.request('PATCH', this.path(namespace, name, subresource), patch, 200, 'application/merge-patch+json');
  }

  delete(namespace: string, name: string): Promise<string> {
    return this.request('DELETE', this.path(namespace, name), undefined, 200);
  }

  close(): void {
    this.#session.close();
  }
}

/** Runs `work` for indexes 0..count-1 with at most `parallel` in flight; the first failure rejects. */
export async function pool(count: number, parallel: number, work: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, count) }, async () => {
      while (next < count) await work(next++);
    }),
  );
}
