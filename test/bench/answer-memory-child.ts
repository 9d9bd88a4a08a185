// Child process of answer-memory.ts (a fresh heap): the forward-answer cache under a client that asks
// for every port of every running sandbox. Prints one JSON line of figures.
import { performance } from 'node:perf_hooks';
import { Answers } from '../../src/protocol/answers.ts';
import { makeRoute } from '../support/routes.ts';

const sandboxes = Number(process.argv[2] ?? 20);
const ports = Number(process.argv[3] ?? 65_535);
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');

const answers = new Answers({
  metadataNamespace: 'envoy.lb.original_dst',
  metadataKey: 'host',
  strippedHeaders: ['x-envoy-original-dst-host'],
});
const routes = Array.from({ length: sandboxes }, (_, i) =>
  makeRoute({ id: `sbx-${i}`, uid: `u-${i}`, podIP: `10.244.${i >> 8}.${i & 255}` }),
);
const held: Buffer[] = [];
for (const route of routes) held.push(answers.forward(route, 49983));

// Warm up first: encoding churn grows V8's young generation to its configured size (8 MB semi-spaces
// in the image), which a loaded service has already done; what is measured after is what stays.
for (let i = 0; i < 200_000; i += 1) answers.forwardAfterWake(routes[i % sandboxes] as never, 1 + (i % 1000), 1);

const settle = () => {
  gc();
  gc();
  return process.memoryUsage();
};
const before = settle();
const started = performance.now();
for (let port = 1; port <= ports; port += 1) for (const route of routes) answers.forward(route, port);
const everyPortMs = performance.now() - started;
const after = settle();

// The hot path: the default port, answered from the cache.
const rounds = 2_000_000;
let sink = 0;
const hitStart = performance.now();
for (let i = 0; i < rounds; i += 1) sink += answers.forward(routes[i % sandboxes] as never, 49983).length;
const hitNs = ((performance.now() - hitStart) * 1e6) / rounds;

process.stdout.write(
  `${JSON.stringify({
    sandboxes,
    ports,
    rssGrowthMB: (after.rss - before.rss) / 2 ** 20,
    heapGrowthMB: (after.heapUsed + after.external - before.heapUsed - before.external) / 2 ** 20,
    uncachedNs: (everyPortMs * 1e6) / (ports * sandboxes),
    hitNs,
    sink: sink > 0 && held.length,
  })}\n`,
);
