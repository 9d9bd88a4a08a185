// Where traffic-access-token keys come from, as OpenKruise's gateway's operators configure them: an OIDC
// discovery document over https (its issuer and jwks_uri; the gateway's OIDC_DISCOVERY_URL), trusting a
// CA bundle from a file (the gateway reads it from a ConfigMap; mount that ConfigMap as a file here), no
// redirects followed, responses capped at 1 MiB, 10 s per fetch, retried with backoff (1 s to 30 s)
// until loaded, then kept for the life of the process. Or a local JWKS file with a configured issuer.
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import type { Logger } from '../observability/logger.ts';
import { Backoff, delay } from '../routes/backoff.ts';
import { parseJwks } from './jwks.ts';
import type { TrafficTokenKeys } from './traffic-token-verifier.ts';

const MAX_RESPONSE_BYTES = 1 << 20;
const FETCH_TIMEOUT_MS = 10_000;

export interface DiscoveryOptions {
  readonly discoveryUrl: string;
  /** PEM CA bundle trusted for the fetches; undefined: the system's roots. */
  readonly ca: string | undefined;
  /** The issuer tokens must carry; empty: the discovery document's (a different one is refused). */
  readonly issuer: string;
}

/** Reads a JWKS file (start-up: a bad file stops the service, naming it). */
export function keysFromFile(path: string, issuer: string): TrafficTokenKeys {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new Error(`cannot read the traffic token key set ${path}: ${(error as Error).message}`, { cause: error });
  }
  try {
    return { keys: parseJwks(text), issuer };
  } catch (error) {
    throw new Error(`the traffic token key set ${path} is refused: ${(error as Error).message}`, { cause: error });
  }
}

/** One discovery, then its JWKS; throws an Error saying what failed. */
export async function discoverKeys(options: DiscoveryOptions): Promise<TrafficTokenKeys> {
  const discovery = asObject(JSON.parse(await fetchText(options.discoveryUrl, options.ca)), 'discovery document');
  const issuer = discovery['issuer'];
  if (typeof issuer !== 'string' || issuer === '') throw new Error('the discovery document has no issuer');
  if (options.issuer !== '' && options.issuer !== issuer) {
    throw new Error(`the discovery document's issuer ${JSON.stringify(issuer)} is not the configured ${JSON.stringify(options.issuer)}`);
  }
  const jwksUri = discovery['jwks_uri'];
  if (typeof jwksUri !== 'string' || !isHttpsUrl(jwksUri)) throw new Error('the discovery document has no https jwks_uri');
  return { keys: parseJwks(await fetchText(jwksUri, options.ca)), issuer };
}

/**
 * Discovers until it succeeds (or the signal aborts), logging each failure, and hands the keys over
 * once. The gateway likewise retries and stays not ready meanwhile.
 */
export async function discoverUntilLoaded(
  options: DiscoveryOptions,
  publish: (keys: TrafficTokenKeys) => void,
  logger: Logger,
  signal: AbortSignal,
): Promise<void> {
  const backoff = new Backoff(1000, 30_000);
  while (!signal.aborted) {
    try {
      const keys = await discoverKeys(options);
      if (signal.aborted) return;
      publish(keys);
      logger.info({ issuer: keys.issuer, keys: keys.keys.size }, 'traffic access token keys loaded');
      return;
    } catch (error) {
      logger.error({ err: (error as Error).message, url: options.discoveryUrl }, 'loading traffic access token keys failed; retrying');
    }
    await delay(backoff.next(), signal);
  }
}

function isHttpsUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'https:' && url.host !== '';
  } catch {
    return false;
  }
}

function asObject(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`the ${what} is not a JSON object`);
  return value as Record<string, unknown>;
}

/** GET over https: 200 only (a redirect is refused, not followed), at most 1 MiB, within 10 s. */
function fetchText(url: string, ca: string | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'GET', ...(ca === undefined ? {} : { ca }), minVersion: 'TLSv1.2', timeout: FETCH_TIMEOUT_MS },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`GET ${url} answered ${res.statusCode}`));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_RESPONSE_BYTES) {
            req.destroy(new Error(`GET ${url} answered more than ${MAX_RESPONSE_BYTES} bytes`));
            return;
          }
          chunks.push(chunk);
        });
        res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`GET ${url} took longer than ${FETCH_TIMEOUT_MS} ms`)));
    req.on('error', reject);
    req.end();
  });
}
