// The sandbox-extproc container's preStop hook in sidecar mode (run by the image's node, so any Envoy
// image works, even one without a shell). Envoy quits at once on SIGTERM, resetting every request in
// flight; so before any container is signalled:
//   1. Envoy starts a graceful drain: every response now says Connection: close (HTTP/2: GOAWAY), and
//      the listener still accepts for DRAIN_SECONDS, while Service endpoints stop pointing here;
//   2. then Envoy closes its listener, and requests in flight (held wakes, downloads, websockets) may
//      finish, until none is left or the deadline passes.
// The hook then returns; the kubelet signals sandbox-extproc (which is idle by then), and only once it
// has exited, Envoy (a native sidecar, terminated after the main container). Envoy offers no event for
// "no request left", so its admin stats are read every 250 ms.
// Arguments: <admin port> <drain seconds> <deadline seconds>.
const [adminPort, drainSeconds, deadlineSeconds] = process.argv.slice(1).map(Number);
const admin = `http://127.0.0.1:${adminPort}`;
const deadline = Date.now() + deadlineSeconds * 1000;
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.min(ms, deadline - Date.now()))));
const log = (msg, fields = {}) => console.log(JSON.stringify({ time: Date.now(), name: 'drain-envoy', msg, ...fields }));

async function activeRequests() {
  const res = await fetch(`${admin}/stats?filter=${encodeURIComponent('^http\\.edge\\.downstream_rq_active$')}`);
  return Number(/: (\d+)\s*$/m.exec(await res.text())?.[1] ?? 0);
}

try {
  const res = await fetch(`${admin}/drain_listeners?graceful`, { method: 'POST' });
  if (!res.ok) throw new Error(`drain_listeners answered ${res.status}`);
  log('envoy draining', { drainSeconds });
  await pause(drainSeconds * 1000);
  let active = await activeRequests();
  while (active > 0 && Date.now() < deadline) {
    await pause(250);
    active = await activeRequests();
  }
  log(active === 0 ? 'envoy drained' : 'drain deadline passed', { active });
} catch (error) {
  // Envoy already gone (or never up): nothing to drain.
  log('envoy not drained', { error: String(error) });
}
