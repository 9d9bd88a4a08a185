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

  it.each(['10.0.0.0/33', '10.0.0.0/', 'fd00::/129', 'ten/8', '10.0.0.0/8/8', '10.0.0/8'])('rejects the network %j', (text) => {
    expect(() => parseCidr(text)).toThrow(/not an IP network|prefix length/);
  });

  it('reads a bare address as one host', () => {
    expect(parseCidr('10.1.1.1')).toEqual({ address: '10.1.1.1', prefix: 32, type: 'ipv4' });
  });
});
