// Which pod IPs a route may send traffic to. Every source's addresses pass through here: a Sandbox's
// status is written by controllers (or anyone who may update it), and Envoy connects wherever the
// route says. A route to 127.0.0.1 would reach the sidecar Envoy's own admin port; link-local reaches
// the node's metadata services; unspecified and multicast addresses name no pod at all.
import { BlockList, isIP } from 'node:net';

/** Ranges no pod IP lies in; refused unless a configured CIDR lies entirely inside one of them. */
const SPECIAL: readonly (readonly [string, number, 'ipv4' | 'ipv6', string])[] = [
  ['127.0.0.0', 8, 'ipv4', 'a loopback address'],
  ['::1', 128, 'ipv6', 'a loopback address'],
  ['169.254.0.0', 16, 'ipv4', 'a link-local address'],
  ['fe80::', 10, 'ipv6', 'a link-local address'],
  ['0.0.0.0', 8, 'ipv4', 'an unspecified address'],
  ['::', 128, 'ipv6', 'an unspecified address'],
  ['224.0.0.0', 4, 'ipv4', 'a multicast address'],
  ['255.255.255.255', 32, 'ipv4', 'the broadcast address'],
  ['ff00::', 8, 'ipv6', 'a multicast address'],
];

export interface Cidr {
  readonly address: string;
  readonly prefix: number;
  readonly type: 'ipv4' | 'ipv6';
}

/** Parses "10.0.0.0/8" or "fd00::/64"; throws with the reason. */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  const address = slash === -1 ? text : text.slice(0, slash);
  const version = isIP(address);
  if (version === 0 || address.includes('%')) throw new Error(`${JSON.stringify(text)} is not an IP network such as 10.0.0.0/8`);
  const max = version === 4 ? 32 : 128;
  const prefixText = slash === -1 ? String(max) : text.slice(slash + 1);
  const prefix = /^[0-9]{1,3}$/.test(prefixText) ? Number(prefixText) : NaN;
  // Stryker disable next-line ConditionalExpression: equivalent; the pattern admits no sign, and NaN fails the upper bound too
  if (!(prefix >= 0 && prefix <= max)) throw new Error(`${JSON.stringify(text)} has a prefix length outside 0-${max}`);
  return { address, prefix, type: version === 4 ? 'ipv4' : 'ipv6' };
}

export class UpstreamAddressPolicy {
  readonly #allowed: BlockList | undefined;
  readonly #special = SPECIAL.map(([address, prefix, type, what]) => {
    const list = new BlockList();
    list.addSubnet(address, prefix, type);
    return { list, what, prefix };
  });
  /** Special addresses explicitly opted into (a configured CIDR inside a special range). */
  readonly #optedIn = new BlockList();

  /** `cidrs` empty: any unicast address outside the special ranges. */
  constructor(cidrs: readonly Cidr[] = []) {
    if (cidrs.length > 0) {
      this.#allowed = new BlockList();
      for (const c of cidrs) this.#allowed.addSubnet(c.address, c.prefix, c.type);
    }
    for (const c of cidrs) {
      const inside = this.#special.find((s) => s.list.check(c.address, c.type) && c.prefix >= s.prefix);
      if (inside !== undefined) this.#optedIn.addSubnet(c.address, c.prefix, c.type);
    }
  }

  /**
   * Why `ip` cannot be a pod's address at all (not an IP, or loopback, link-local, unspecified,
   * multicast, unless a configured CIDR opts it in), or undefined: the allow-list is not consulted.
   */
  specialRefusal(ip: string): string | undefined {
    const version = isIP(ip);
    if (version === 0 || ip.includes('%')) return 'not an IP address';
    const type = version === 4 ? 'ipv4' : 'ipv6';
    if (this.#optedIn.check(ip, type)) return undefined;
    for (const special of this.#special) if (special.list.check(ip, type)) return special.what;
    return undefined;
  }

  /** Why `ip` may not be routed to, or undefined when it may. */
  refusal(ip: string): string | undefined {
    const version = isIP(ip);
    if (version === 0 || ip.includes('%')) return 'not an IP address';
    const type = version === 4 ? 'ipv4' : 'ipv6';
    if (this.#allowed !== undefined && !this.#allowed.check(ip, type)) return 'outside --upstream-cidrs';
    if (this.#optedIn.check(ip, type)) return undefined;
    for (const special of this.#special) if (special.list.check(ip, type)) return special.what;
    return undefined;
  }
}
