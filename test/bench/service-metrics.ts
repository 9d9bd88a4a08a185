// One read of a running service's /metrics, queried by sample name (the bench reads it, never samples it).
import { ROUTE_STATES } from '../../src/routes/route.ts';
import type { ServiceProcess } from '../support/service-process.ts';

export class ServiceMetrics {
  readonly #url: string;
  #text = '';

  constructor(service: Pick<ServiceProcess, 'httpPort'>) {
    this.#url = `http://127.0.0.1:${service.httpPort}/metrics`;
  }

  async refresh(): Promise<this> {
    this.#text = await (await fetch(this.#url)).text();
    return this;
  }

  /** A sample's value; `labels` is the exact label text, such as 'state="running"'. */
  value(name: string, labels = ''): number {
    const line = this.#text.split('\n').find((l) => l.startsWith(labels ? `${name}{${labels}} ` : `${name} `));
    return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
  }

  /** The sum of a sample's values over all its label sets. */
  sum(name: string): number {
    return this.#text
      .split('\n')
      .filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
      .reduce((total, l) => total + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  }

  routes(state?: string): number {
    if (state !== undefined) return this.value('sandbox_extproc_routes', `state="${state}"`);
    return ROUTE_STATES.reduce((sum, s) => sum + this.routes(s), 0);
  }
}
