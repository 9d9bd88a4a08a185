// grpc.health.v1 on the service's own gRPC transport: Check (unary) and Watch (a stream of the status
// each time it changes). The ext_proc service and the server as a whole ('') share one status.
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import { LOADER_OPTIONS, PROTO_DIR } from '../protocol/proto.ts';
import type { GrpcCall, GrpcTransport, MethodOptions } from './grpc-transport.ts';
import { Status } from './grpc-wire.ts';

type ServingStatus = 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

interface HealthRequest {
  service?: string;
}

function load(): { check: MethodDefinition<HealthRequest, { status: ServingStatus }> } {
  const definition = loadSync('grpc/health/v1/health.proto', { ...LOADER_OPTIONS, includeDirs: [PROTO_DIR] });
  const service = definition['grpc.health.v1.Health'] as unknown as Record<
    string,
    MethodDefinition<HealthRequest, { status: ServingStatus }>
  >;
  return { check: service['Check'] as MethodDefinition<HealthRequest, { status: ServingStatus }> };
}

const codec = load().check;
const encode = (status: ServingStatus): Buffer => codec.responseSerialize({ status });
const ANSWERS: Record<ServingStatus, Buffer> = {
  SERVING: encode('SERVING'),
  NOT_SERVING: encode('NOT_SERVING'),
  SERVICE_UNKNOWN: encode('SERVICE_UNKNOWN'),
};

export class HealthService {
  readonly #services: ReadonlySet<string>;
  #serving = false;
  readonly #watchers = new Set<(status: ServingStatus) => void>();

  /** `services`: the names health is reported for, besides '' (the whole server). */
  constructor(services: readonly string[]) {
    this.#services = new Set(['', ...services]);
  }

  setServing(serving: boolean): void {
    if (serving === this.#serving) return;
    this.#serving = serving;
    for (const watcher of this.#watchers) watcher(this.#status());
  }

  register(transport: GrpcTransport, options: MethodOptions): void {
    transport.handle('/grpc.health.v1.Health/Check', (call) => this.#unary(call, (service) => this.#check(call, service)), options);
    transport.handle('/grpc.health.v1.Health/Watch', (call) => this.#unary(call, (service) => this.#watch(call, service)), options);
  }

  #status(): ServingStatus {
    return this.#serving ? 'SERVING' : 'NOT_SERVING';
  }

  /** Reads the one request message, then runs `then` with its service name; returns the cleanup. */
  #unary(call: GrpcCall, then: (service: string) => (() => void) | void) {
    let request: Buffer | undefined;
    let cleanup: (() => void) | void;
    return {
      message: (bytes: Buffer) => {
        if (request !== undefined) return call.fail(Status.INVALID_ARGUMENT, 'one request message expected');
        request = Buffer.from(bytes);
      },
      halfClose: () => {
        if (request === undefined) return call.fail(Status.INVALID_ARGUMENT, 'a request message is required');
        let service: string;
        try {
          service = codec.requestDeserialize(request).service ?? '';
        } catch {
          return call.fail(Status.INVALID_ARGUMENT, 'malformed HealthCheckRequest');
        }
        cleanup = then(service);
      },
      cancel: () => cleanup?.(),
    };
  }

  #check(call: GrpcCall, service: string): void {
    if (!this.#services.has(service)) return call.fail(Status.NOT_FOUND, `unknown service ${JSON.stringify(service)}`);
    call.send(ANSWERS[this.#status()]);
    call.finish();
  }

  #watch(call: GrpcCall, service: string): () => void {
    if (!this.#services.has(service)) {
      call.send(ANSWERS.SERVICE_UNKNOWN);
      return () => undefined;
    }
    call.send(ANSWERS[this.#status()]);
    const watcher = (status: ServingStatus) => call.send(ANSWERS[status]);
    this.#watchers.add(watcher);
    return () => this.#watchers.delete(watcher);
  }
}
