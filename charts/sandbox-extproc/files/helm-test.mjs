// `helm test`: proves an install works, from a Pod in the release's namespace (run by the service's own
// image: node, no shell). The service must answer ready on its Service, and, in sidecar mode, a request
// through the edge for a sandbox that does not exist must get the service's own answer (502
// sandbox_not_found: Envoy reached the service, the service looked the ID up in its route table), not
// Envoy's (a 503 without it). Endpoints may take a moment to appear after the install: each check is
// tried again for up to 60 s.
// Arguments: <readyz URL> <edge URL or -> <sandbox ID header>.
const [readyz, edge, idHeader] = process.argv.slice(1);
const deadline = Date.now() + 60_000;
const log = (msg, fields = {}) => console.log(JSON.stringify({ time: Date.now(), name: 'helm-test', msg, ...fields }));

async function until(what, check) {
  let last = 'not tried';
  for (;;) {
    try {
      const why = await check();
      if (why === undefined) return log(`${what}: ok`);
      last = why;
    } catch (error) {
      last = error.message;
    }
    if (Date.now() > deadline) throw new Error(`${what}: ${last}`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

try {
  await until(`the service is ready (${readyz})`, async () => {
    const res = await fetch(readyz);
    return res.status === 200 ? undefined : `${res.status} ${(await res.text()).trim()}`;
  });
  if (edge !== '-') {
    const id = `helm-test-unknown-${Date.now().toString(36)}`;
    await until(`the edge routes through the service (${edge}, ${idHeader}: ${id})`, async () => {
      const res = await fetch(edge, { headers: { [idHeader]: id } });
      const body = await res.text();
      let error;
      try {
        error = JSON.parse(body).error;
      } catch {
        error = undefined;
      }
      return res.status === 502 && error === 'sandbox_not_found' ? undefined : `answered ${res.status} ${body.slice(0, 200)}`;
    });
  }
  log('install works');
} catch (error) {
  log('install does not work', { err: error.message });
  process.exitCode = 1;
}
