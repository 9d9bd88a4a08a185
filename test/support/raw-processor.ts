// The ext_proc Process method with raw-bytes codecs, for servers and clients that handle messages as
// Buffers (fault stand-ins, the bare benchmark floor, protocol fuzzing).
import type { ServiceDefinition } from '@grpc/grpc-js';

const identity = (b: Buffer) => b;

export const PROCESS_PATH = '/envoy.service.ext_proc.v3.ExternalProcessor/Process';

export function processDefinition(
  codecs: { requestSerialize?: (v: never) => Buffer; responseDeserialize?: (b: Buffer) => unknown } = {},
): ServiceDefinition {
  return {
    Process: {
      path: PROCESS_PATH,
      requestStream: true,
      responseStream: true,
      requestSerialize: codecs.requestSerialize ?? identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: codecs.responseDeserialize ?? identity,
    },
  } as unknown as ServiceDefinition;
}
