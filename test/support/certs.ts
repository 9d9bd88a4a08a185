// Certificates for the test control plane, made with openssl: a CA, the API server's serving cert,
// an admin client cert (group system:masters) and the service-account signing key pair.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface CertPaths {
  readonly caCert: string;
  readonly caKey: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly adminCert: string;
  readonly adminKey: string;
  readonly saKey: string;
  readonly saPub: string;
}

const openssl = (dir: string, ...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });

/** Writes <name>.key and <name>.crt in dir, signed by the CA there (ca.crt, ca.key). */
export function signed(dir: string, name: string, subject: string, extensions: string): void {
  openssl(dir, 'req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject);
  writeFileSync(join(dir, `${name}.ext`), extensions);
  openssl(
    dir,
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    `${name}.crt`,
    '-days',
    '7',
    '-extfile',
    `${name}.ext`,
  );
}

/** A self-signed CA (ca.crt, ca.key) in dir. */
function makeCa(dir: string, name: string): void {
  openssl(
    dir,
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    '7',
    '-subj',
    `/CN=${name}`,
  );
}

/** A CA and a serving certificate it signed for these DNS names (wildcards allowed), in dir. */
export function makeServingCert(dir: string, dnsNames: readonly string[]): { caCert: string; cert: string; key: string } {
  makeCa(dir, 'sandbox-extproc-test-edge-ca');
  const names = dnsNames.map((n) => `DNS:${n}`).join(',');
  signed(dir, 'edge', `/CN=${dnsNames[0] ?? 'edge'}`, `subjectAltName=${names}\nextendedKeyUsage=serverAuth\n`);
  return { caCert: join(dir, 'ca.crt'), cert: join(dir, 'edge.crt'), key: join(dir, 'edge.key') };
}

/** `serverIPs`: the addresses the API server's certificate covers (more than loopback when containers reach it). */
export function makeCerts(dir: string, serverIPs: readonly string[] = ['127.0.0.1']): CertPaths {
  makeCa(dir, 'sandbox-extproc-test-ca');
  const ips = [...new Set(['127.0.0.1', ...serverIPs])].map((ip) => `IP:${ip}`).join(',');
  signed(dir, 'server', '/CN=kube-apiserver', `subjectAltName=${ips},DNS:localhost\nextendedKeyUsage=serverAuth\n`);
  signed(dir, 'admin', '/O=system:masters/CN=test-admin', 'extendedKeyUsage=clientAuth\n');
  openssl(dir, 'genrsa', '-out', 'sa.key', '2048');
  openssl(dir, 'rsa', '-in', 'sa.key', '-pubout', '-out', 'sa.pub');
  const p = (f: string) => join(dir, f);
  return {
    caCert: p('ca.crt'),
    caKey: p('ca.key'),
    serverCert: p('server.crt'),
    serverKey: p('server.key'),
    adminCert: p('admin.crt'),
    adminKey: p('admin.key'),
    saKey: p('sa.key'),
    saPub: p('sa.pub'),
  };
}

/** The service's flags for a TLS gRPC listener with these certificates; mTLS also requires client certificates. */
export function grpcTlsArgs(certs: CertPaths, mtls: boolean): string[] {
  return ['--grpc-tls-cert', certs.serverCert, '--grpc-tls-key', certs.serverKey, ...(mtls ? ['--grpc-tls-client-ca', certs.caCert] : [])];
}
