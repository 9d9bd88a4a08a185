// Envoy's own ext_proc protos, as shipped by @grpc/grpc-js-xds (a dev-only dependency): the oracle
// that proves proto/ is wire-compatible.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';

const require = createRequire(import.meta.url);
const deps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');

/** Envoy's own access log service: its StreamAccessLogs method. */
export function loadAccessLogOracle(): MethodDefinition<object, object> {
  const definition = loadSync('envoy/service/accesslog/v3/als.proto', OPTIONS);
  const service = definition['envoy.service.accesslog.v3.AccessLogService'] as unknown as Record<string, MethodDefinition<object, object>>;
  return service['StreamAccessLogs'] as MethodDefinition<object, object>;
}

const OPTIONS = {
  keepCase: true,
  longs: String,
  enums: String,
  bytes: Buffer,
  defaults: false,
  oneofs: true,
  includeDirs: ['envoy-api', 'xds', 'protoc-gen-validate', 'googleapis'].map((d) => join(deps, d)),
};

export function loadOracle(): MethodDefinition<object, object> {
  const definition = loadSync('envoy/service/ext_proc/v3/external_processor.proto', OPTIONS);
  const service = definition['envoy.service.ext_proc.v3.ExternalProcessor'] as unknown as Record<string, MethodDefinition<object, object>>;
  return service['Process'] as MethodDefinition<object, object>;
}
