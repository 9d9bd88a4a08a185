// Loaded into a measured process with `node --require` (the bench's allocation figures): counts the
// bytes the process allocated on V8's heap between two SIGUSR2s, from V8's own GC statistics (heap
// used before each collection minus after the one before it, plus what is in use now), and prints
// them as a JSON line. Allocation is counted, not sampled: a sampling heap profile keeps only what
// survives, and a stream's garbage does not.
'use strict';
// eslint-disable-next-line @typescript-eslint/no-require-imports, no-undef -- loaded with --require, before any module system
const v8 = require('node:v8');

let profiler;
let base = 0;
let reports = 0;
const start = () => {
  profiler = new v8.GCProfiler();
  profiler.start();
  base = v8.getHeapStatistics().used_heap_size;
};
start();
process.on('SIGUSR2', () => {
  const { statistics } = profiler.stop();
  let allocated = 0;
  let after = base;
  for (const gc of statistics) {
    allocated += gc.beforeGC.heapStatistics.usedHeapSize - after;
    after = gc.afterGC.heapStatistics.usedHeapSize;
  }
  allocated += v8.getHeapStatistics().used_heap_size - after;
  reports += 1;
  console.log(JSON.stringify({ msg: 'allocation probe', report: reports, allocated, collections: statistics.length }));
  start();
});
