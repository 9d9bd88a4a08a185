// TypeScript shapes of the proto/ messages as @grpc/proto-loader presents them (keepCase, oneofs).
export interface HeaderValue {
  key?: string;
  value?: string;
  raw_value?: Buffer;
}

export interface HeaderMap {
  headers?: HeaderValue[];
}

export interface HttpHeaders {
  headers?: HeaderMap;
  end_of_stream?: boolean;
}

/** ProcessingRequest's oneof `request`, in declaration order (its fields 2 to 7). */
export const REQUEST_KINDS = [
  'request_headers',
  'response_headers',
  'request_body',
  'response_body',
  'request_trailers',
  'response_trailers',
] as const;

export type RequestKind = (typeof REQUEST_KINDS)[number];

export interface ProcessingRequest {
  request?: RequestKind;
  request_headers?: HttpHeaders;
  response_headers?: HttpHeaders;
  request_body?: { body?: Buffer; end_of_stream?: boolean };
  response_body?: { body?: Buffer; end_of_stream?: boolean };
  request_trailers?: { trailers?: HeaderMap };
  response_trailers?: { trailers?: HeaderMap };
  observability_mode?: boolean;
}

export interface HeaderMutation {
  set_headers?: { header: HeaderValue; append?: { value: boolean } }[];
  remove_headers?: string[];
}

export interface CommonResponse {
  status?: 'CONTINUE' | 'CONTINUE_AND_REPLACE';
  header_mutation?: HeaderMutation;
  clear_route_cache?: boolean;
}

export interface StructValue {
  fields: Record<string, Value>;
}

// protobufjs's bundled google/protobuf/struct.proto names Value's fields in camelCase, keepCase or not.
export type Value = { stringValue: string } | { numberValue: number } | { boolValue: boolean } | { structValue: StructValue };

export interface ProcessingResponse {
  request_headers?: { response?: CommonResponse };
  response_headers?: { response?: CommonResponse };
  request_body?: { response?: CommonResponse };
  response_body?: { response?: CommonResponse };
  request_trailers?: { header_mutation?: HeaderMutation };
  response_trailers?: { header_mutation?: HeaderMutation };
  immediate_response?: {
    status?: { code: number };
    headers?: HeaderMutation;
    body?: Buffer;
    details?: string;
  };
  dynamic_metadata?: StructValue;
  override_message_timeout?: { seconds: string | number; nanos: number };
}
