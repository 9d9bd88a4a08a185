// Loads the ext_proc subset in proto/ and exposes the message codecs. Answers are encoded once and
// written as bytes (server/grpc-transport.ts frames them), so prepared answers are never re-encoded.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadSync, type MethodDefinition } from '@grpc/proto-loader';
import type { ProcessingRequest, ProcessingResponse } from './messages.ts';

const SERVICE_PROTO = 'envoy/service/ext_proc/v3/external_processor.proto';
/** proto/ at the package root: two levels up from src/protocol/, one up from the dist/ bundle. */
export const PROTO_DIR = findProtoDir();

function findProtoDir(): string {
  const candidates = ['../../proto/', '../proto/'].map((relative) => fileURLToPath(new URL(relative, import.meta.url)));
  const found = candidates.find((dir) => existsSync(`${dir}${SERVICE_PROTO}`));
  if (found === undefined) throw new Error(`${SERVICE_PROTO} not found in ${candidates.join(' or ')}: proto/ must ship beside dist/`);
  return found;
}
const SERVICE = 'envoy.service.ext_proc.v3.ExternalProcessor';

export const LOADER_OPTIONS = { keepCase: true, longs: String, enums: String, bytes: Buffer, defaults: false, oneofs: true } as const;

function load(): MethodDefinition<ProcessingRequest, ProcessingResponse> {
  const definition = loadSync(SERVICE_PROTO, { ...LOADER_OPTIONS, includeDirs: [PROTO_DIR] });
  const service = definition[SERVICE] as unknown as Record<string, MethodDefinition<ProcessingRequest, ProcessingResponse>>;
  return service['Process'] as MethodDefinition<ProcessingRequest, ProcessingResponse>;
}

const process = load();

export const encodeResponse = (response: ProcessingResponse): Buffer => process.responseSerialize(response);
export const decodeResponse = (bytes: Buffer): ProcessingResponse => process.responseDeserialize(bytes);
export const encodeRequest = (request: ProcessingRequest): Buffer => process.requestSerialize(request);
export const decodeRequest = (bytes: Buffer): ProcessingRequest => process.requestDeserialize(bytes);

/** The ext_proc method's path on the gRPC server. */
export const EXT_PROC_PATH = `/${SERVICE}/Process`;
