import { describe, expect, it } from 'vitest';
import { parseCidr, UpstreamAddressPolicy } from '../../../src/routes/upstream-address.ts';

describe('upstream address policy', () => {
  const open = new UpstreamAddressPolicy();

  it.each(['10.1.2.3', '192.168.0.9', '172.16.5.5', 'fd00::1234', '2001:db8::1', '100.64.1.1'])('allows the pod address %s', (ip) => {
    expect(open.refusal(ip)).toBeUndefined();
  });

  it.each([
    ['127.0.0.1', 'a loopback address'],
    ['127.255.0.9', 'a loopback address'],
    ['::1', 'a loopback address'],
    ['::ffff:127.0.0.1', 'a loopback address'],
    ['169.254.169.254', 'a link-local address'],
    ['fe80::1', 'a link-local address'],
    ['0.0.0.0', 'an unspecified address'],
    ['::', 'an unspecified address'],
    ['224.0.0.1', 'a multicast address'],
    ['255.255.255.255', 'the broadcast address'],
    ['ff02::1', 'a multicast address'],
    ['fe80::1%eth0', 'not an IP address'],
    ['010.0.0.1', 'not an IP address'],
    ['10.0.0.1:80', 'not an IP address'],
    ['localhost', 'not an IP address'],
    ['', 'not an IP address'],
  ])('refuses %j: %s', (ip, why) => {
    expect(open.refusal(ip)).toBe(why);
  });

  // Whole ranges, not their best-known member: a policy narrowed to 169.254.169.254 (or 127.0.0.1) would
  // let ECS-style metadata (169.254.170.2) or the rest of the range through. Each range's first and last
  // address is refused, its neighbours outside are not, and IPv4-mapped IPv6 forms (dotted or hex) are
  // refused as the IPv4 address they carry.
  describe('refuses whole special ranges, to their edges', () => {
    it.each([
      ['169.254.0.0', 'a link-local address'],
      ['169.254.170.2', 'a link-local address'],
      ['169.254.255.255', 'a link-local address'],
      ['::ffff:169.254.0.0', 'a link-local address'],
      ['::ffff:169.254.170.2', 'a link-local address'],
      ['::ffff:169.254.169.254', 'a link-local address'],
      ['::ffff:a9fe:a9fe', 'a link-local address'],
      ['::ffff:169.254.255.255', 'a link-local address'],
      ['fe80::', 'a link-local address'],
      ['FE80::1', 'a link-local address'],
      ['fe80::a9fe:a9fe', 'a link-local address'],
      ['febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'a link-local address'],
      ['127.0.0.0', 'a loopback address'],
      ['127.255.255.255', 'a loopback address'],
      ['::ffff:127.0.0.0', 'a loopback address'],
      ['::ffff:127.255.255.255', 'a loopback address'],
      ['::ffff:7f00:1', 'a loopback address'],
      ['0:0:0:0:0:0:0:1', 'a loopback address'],
      ['0.0.0.0', 'an unspecified address'],
      ['0.255.255.255', 'an unspecified address'],
      ['::ffff:0.0.0.0', 'an unspecified address'],
      ['224.0.0.0', 'a multicast address'],
      ['239.255.255.255', 'a multicast address'],
      ['::ffff:224.0.0.1', 'a multicast address'],
      ['::ffff:255.255.255.255', 'the broadcast address'],
      ['ff00::', 'a multicast address'],
      ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'a multicast address'],
    ])('refuses %s: %s', (ip, why) => {
      expect(open.refusal(ip)).toBe(why);
    });

    it.each([
      '169.253.255.255',
      '169.255.0.0',
      '::ffff:169.253.255.255',
      '::ffff:169.255.0.0',
      'fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
      'fec0::',
      '126.255.255.255',
      '128.0.0.0',
      '::ffff:126.255.255.255',
      '::ffff:128.0.0.0',
      '::2',
      '1.0.0.0',
      '223.255.255.255',
      '240.0.0.0',
      '255.255.255.254',
      'feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff',
      '::ffff:10.0.0.1',
    ])('allows %s, just outside a special range', (ip) => {
      expect(open.refusal(ip)).toBeUndefined();
    });
  });

  it('with --upstream-cidrs, refuses what lies outside them', () => {
    const policy = new UpstreamAddressPolicy([parseCidr('10.244.0.0/16'), parseCidr('fd00:10::/64')]);
    expect(policy.refusal('10.244.3.4')).toBeUndefined();
    expect(policy.refusal('fd00:10::9')).toBeUndefined();
    expect(policy.refusal('10.96.0.1')).toBe('outside --upstream-cidrs');
    expect(policy.refusal('127.0.0.1')).toBe('outside --upstream-cidrs');
  });

  it('allows a special range only when a listed network lies inside it, never through a wider one', () => {
    expect(new UpstreamAddressPolicy([parseCidr('127.0.0.0/8')]).refusal('127.0.0.31')).toBeUndefined();
    expect(new UpstreamAddressPolicy([parseCidr('0.0.0.0/0')]).refusal('127.0.0.1')).toBe('a loopback address');
    expect(new UpstreamAddressPolicy([parseCidr('0.0.0.0/0')]).refusal('10.0.0.1')).toBeUndefined();
  });

  it.each([
    '10.0.0.0/33',
    '10.0.0.0/',
    'fd00::/129',
    'ten/8',
    '10.0.0.0/8/8',
    '10.0.0/8',
    '10.0.0.0/ 8',
    '10.0.0.0/8 ',
    '10.0.0.0/1e1',
    '10.0.0.0/-0',
  ])('rejects the network %j', (text) => {
    expect(() => parseCidr(text)).toThrow(/not an IP network|prefix length/);
  });

  it('reads a bare address as one host', () => {
    expect(parseCidr('10.1.1.1')).toEqual({ address: '10.1.1.1', prefix: 32, type: 'ipv4' });
  });
});

describe("x-sandbox-pod-ip's check (specialRefusal)", () => {
  it('says a value is not an IP address, and names the special range of one that is', () => {
    const policy = new UpstreamAddressPolicy();
    expect(policy.specialRefusal('box')).toBe('not an IP address');
    expect(policy.specialRefusal('fe80::1%eth0')).toBe('not an IP address');
    expect(policy.specialRefusal('127.0.0.1')).toBe('a loopback address');
    expect(policy.specialRefusal('8.8.8.8')).toBeUndefined();
  });
});
