// Kubernetes service links: unless a pod says `enableServiceLinks: false`, the kubelet gives each of its
// containers variables for every Service of its namespace that has a cluster IP, named after the
// Service (pkg/kubelet/envvars: upper case, '-' to '_'). A Service called sandbox-extproc, or
// sandbox-extproc-<anything>, therefore puts SANDBOX_EXTPROC_* variables into the environment that are
// no setting and no typo. The chart turns service links off; this recognises them in hand-written
// manifests, by name and value together, so that a typo still stops start-up.
import { isIP } from 'node:net';

/** A Service name's variable prefix: SANDBOX_EXTPROC, or SANDBOX_EXTPROC_ and the rest of the name. */
const PREFIX = 'SANDBOX_EXTPROC(?:_[A-Z0-9_]+)?';
const PROTOCOL = '(TCP|UDP|SCTP)';

const isPort = (text: string) => /^[0-9]{1,5}$/.test(text) && Number(text) >= 1 && Number(text) <= 65535;
/** `tcp://10.96.0.1:80`, `udp://[fd00::1]:53`: the form kubelet gives (net.JoinHostPort). */
function isLinkUrl(text: string, protocol?: string, port?: string): boolean {
  const m = /^(tcp|udp|sctp):\/\/(?:\[([^\]]+)\]|([^:]+)):([0-9]+)$/.exec(text);
  if (m === null) return false;
  const [, scheme, v6, v4, at] = m as unknown as [string, string, string | undefined, string | undefined, string];
  const host = v6 ?? v4 ?? '';
  return (
    (v6 === undefined ? isIP(host) === 4 : isIP(host) === 6) &&
    isPort(at) &&
    (protocol === undefined || scheme === protocol.toLowerCase()) &&
    (port === undefined || at === port)
  );
}

/** Each variable the kubelet writes for a Service, with the value it writes there. */
const SHAPES: readonly { readonly name: RegExp; readonly value: (value: string, m: RegExpExecArray) => boolean }[] = [
  { name: new RegExp(`^${PREFIX}_SERVICE_HOST$`), value: (v) => isIP(v) !== 0 },
  // The first port, then one per named port (port names: lower-case letters, digits and '-').
  { name: new RegExp(`^${PREFIX}_SERVICE_PORT(?:_[A-Z0-9_]+)?$`), value: isPort },
  // Docker links: the first port, then four per port.
  { name: new RegExp(`^${PREFIX}_PORT$`), value: (v) => isLinkUrl(v) },
  { name: new RegExp(`^${PREFIX}_PORT_([0-9]+)_${PROTOCOL}$`), value: (v, m) => isLinkUrl(v, m[2], m[1]) },
  { name: new RegExp(`^${PREFIX}_PORT_([0-9]+)_${PROTOCOL}_PROTO$`), value: (v, m) => v === m[2]?.toLowerCase() },
  { name: new RegExp(`^${PREFIX}_PORT_([0-9]+)_${PROTOCOL}_PORT$`), value: (v, m) => v === m[1] },
  { name: new RegExp(`^${PREFIX}_PORT_([0-9]+)_${PROTOCOL}_ADDR$`), value: (v) => isIP(v) !== 0 },
];

/**
 * Whether name=value has the shape of a variable the kubelet injects for a Service named
 * sandbox-extproc(-*). Callers ask only about names that are no setting: a setting's name
 * (SANDBOX_EXTPROC_GRPC_PORT for a Service sandbox-extproc-grpc) is always read as the setting.
 */
export function isServiceLink(name: string, value: string): boolean {
  for (const shape of SHAPES) {
    const m = shape.name.exec(name);
    if (m !== null && shape.value(value, m)) return true;
  }
  return false;
}

/** The Service a link-shaped value of a setting's variable would come from, for the error message. */
export function serviceLinkHint(name: string, value: string): string {
  const m = /^SANDBOX_EXTPROC_([A-Z0-9_]+)_PORT$/.exec(name);
  if (m === null || !isLinkUrl(value)) return '';
  const service = `sandbox-extproc-${(m[1] as string).toLowerCase().replaceAll('_', '-')}`;
  return ` (this is what Kubernetes sets for a Service named ${service} when service links are on: set enableServiceLinks: false on the pod, or give ${name} yourself)`;
}
