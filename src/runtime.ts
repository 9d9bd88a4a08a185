// The oldest Node.js this service runs on. The HTTP/2 stream-reset limits each gRPC listener is given
// (streamResetBurst / streamResetRate, the rapid-reset guard) exist from Node 22.19 and 24; an older
// Node ignores the options without a word, and @kubernetes/client-node 2.x needs 22.19 as well. So
// start-up refuses an older runtime, saying so, instead of running without its guard.
export const MIN_NODE = [22, 19, 0] as const;

/** Why `version` ("24.11.0", as process.versions.node) cannot run the service, or undefined. */
export function runtimeProblem(version: string): string | undefined {
  const parts = version.split('.').map((n) => Number.parseInt(n, 10));
  for (let i = 0; i < MIN_NODE.length; i += 1) {
    const have = parts[i] ?? 0;
    const need = MIN_NODE[i] as number;
    if (Number.isNaN(have)) break;
    if (have > need) return undefined;
    if (have < need) {
      return `Node.js ${MIN_NODE.join('.')} or later is needed (24 recommended), this is ${version}: older runtimes lack the HTTP/2 stream-reset limits (the rapid-reset guard) this service sets on every gRPC listener`;
    }
  }
  return undefined;
}
