// Small readers for untyped Kubernetes objects, and a table that lets many routes share one value.
// Shared by the kinds; nothing here knows a particular CRD.

export type Obj = Record<string, unknown>;

export const asObj = (v: unknown): Obj | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : undefined);
export const asStr = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** The parts of an object every kind reads; undefined when it lacks a name, namespace or UID. */
export interface ObjectParts {
  readonly meta: Obj;
  readonly name: string;
  readonly namespace: string;
  readonly uid: string;
  readonly spec: Obj | undefined;
  readonly status: Obj | undefined;
  readonly annotations: Obj | undefined;
}

export function objectParts(object: unknown): ObjectParts | undefined {
  const obj = asObj(object);
  const meta = asObj(obj?.['metadata']);
  if (meta === undefined) return undefined;
  const name = asStr(meta['name']);
  const namespace = asStr(meta['namespace']);
  const uid = asStr(meta['uid']);
  if (name === undefined || namespace === undefined || uid === undefined || uid === '') return undefined;
  return {
    meta,
    name,
    namespace,
    uid,
    spec: asObj(obj?.['spec']),
    status: asObj(obj?.['status']),
    annotations: asObj(meta['annotations']),
  };
}

/** The condition of this type in status.conditions, if any. */
export function findCondition(status: Obj | undefined, type: string): Obj | undefined {
  const list = status?.['conditions'];
  if (!Array.isArray(list)) return undefined;
  for (const item of list) {
    const condition = asObj(item);
    if (condition?.['type'] === type) return condition;
  }
  return undefined;
}

export function conditionTrue(status: Obj | undefined, type: string): boolean {
  const list = status?.['conditions'];
  if (!Array.isArray(list)) return false;
  return list.some((c) => asObj(c)?.['type'] === type && asObj(c)?.['status'] === 'True');
}

/** Epoch ms of an RFC 3339 time, or undefined when absent or malformed. */
export function parseTime(text: string | undefined): number | undefined {
  const ms = text === undefined ? NaN : Date.parse(text);
  return Number.isFinite(ms) ? ms : undefined;
}

/** Parses a Go duration string ("120s", "2m", "1h30m", "1.5h") into seconds; undefined when malformed. */
export function parseGoDurationSeconds(text: string): number | undefined {
  const re = /([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)/gy;
  const unit: Record<string, number> = { ns: 1e-9, us: 1e-6, µs: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 };
  if (text === '0') return 0;
  let total = 0;
  let consumed = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    total += Number(m[1]) * (unit[m[2] as string] as number);
    consumed = re.lastIndex;
  }
  return consumed === text.length && consumed > 0 ? total : undefined;
}

/** RFC 3339 with whole seconds, as metav1.Time writes it. */
// Stryker disable next-line Regex: equivalent; toISOString always ends in .sssZ
export const rfc3339 = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

/** Keeps one copy of a value per key, so many routes share it; cleared when it grows past a bound. */
export class Interner<T> {
  readonly #table = new Map<string, T>();
  get(key: string, value: () => T): T {
    let held = this.#table.get(key);
    if (held === undefined) {
      if (this.#table.size >= 4096) this.#table.clear();
      held = value();
      this.#table.set(key, held);
    }
    return held;
  }
}
