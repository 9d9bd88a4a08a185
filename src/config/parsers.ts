// Value parsers for settings. Each returns the value or throws a plain message; config/load.ts adds the
// setting's name, so every bad value stops start-up with a message naming it. Each parser also carries
// the JSON Schema of the values it accepts, from which the Helm chart's values.schema.json is made.
import { parseCidr, type Cidr } from '../routes/upstream-address.ts';

export type Parser<T> = ((text: string) => T) & {
  readonly schema: Record<string, unknown>;
  /** The values allowed, for settings that take one (or a list) of a closed set: --help lists them. */
  readonly choices?: readonly string[];
};

const parser = <T>(fn: (text: string) => T, schema: Record<string, unknown>, choices?: readonly string[]): Parser<T> =>
  Object.assign(fn, choices === undefined ? { schema } : { schema, choices });

export const string: Parser<string> = parser((text) => text, { type: 'string' });

/** One value matching a pattern (anchored), such as a DNS label. */
export function matching(re: RegExp, what: string): Parser<string> {
  return parser(
    (text) => {
      if (!re.test(text)) throw new Error(`expected ${what}`);
      return text;
    },
    { type: 'string', pattern: re.source },
  );
}

export function integer(min: number, max: number): Parser<number> {
  return parser(
    (text) => {
      if (!/^[0-9]+$/.test(text) || Number(text) < min || Number(text) > max)
        throw new Error(`expected a whole number from ${min} to ${max}`);
      return Number(text);
    },
    { type: 'integer', minimum: min, maximum: max },
  );
}

export const port = integer(0, 65535);

const BYTE_UNITS: Record<string, number> = { '': 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 };

/** Sizes in bytes: "262144", "256Ki", "16Mi", "1Gi" (binary units, as Kubernetes writes them). */
export function bytes(min: number, max: number): Parser<number> {
  return parser(
    (text) => {
      const match = /^([0-9]+)(Ki|Mi|Gi)?$/.exec(text);
      const value = match === null ? NaN : Number(match[1]) * (BYTE_UNITS[match[2] ?? ''] as number);
      if (!(value >= min && value <= max)) throw new Error(`expected a size such as 256Ki, 16Mi or 1048576, from ${min} to ${max} bytes`);
      return value;
    },
    { type: 'string', pattern: '^[0-9]+(Ki|Mi|Gi)?$' },
  );
}

/** A decimal from 0 to 1, both included, such as 0.25. */
export const ratio: Parser<number> = parser(
  (text) => {
    const value = /^(0|1|0?\.[0-9]+|1\.0*)$/.test(text) ? Number(text) : NaN;
    if (!(value >= 0 && value <= 1)) throw new Error('expected a number from 0 to 1, such as 0.25');
    return value;
  },
  // A number in values files (0.25), or its text.
  { type: 'number', minimum: 0, maximum: 1 },
);

/** A decimal strictly between 0 and 1, such as 0.5. */
export const fraction: Parser<number> = parser(
  (text) => {
    const value = /^0?\.[0-9]+$/.test(text) ? Number(text) : NaN;
    if (!(value > 0 && value < 1)) throw new Error('expected a fraction between 0 and 1, such as 0.5');
    return value;
  },
  { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 },
);

export const boolean: Parser<boolean> = parser(
  (text) => {
    if (['true', '1', 'yes', 'on'].includes(text.toLowerCase())) return true;
    if (['false', '0', 'no', 'off'].includes(text.toLowerCase())) return false;
    throw new Error('expected true or false');
  },
  { type: 'boolean' },
  ['true', 'false'],
);

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Durations in milliseconds: "250ms", "30s", "5m", "1h". */
export function duration(min: number, max: number): Parser<number> {
  return parser(
    (text) => {
      const match = /^([0-9]+)(ms|s|m|h)$/.exec(text);
      const ms = match === null ? NaN : Number(match[1]) * (UNITS[match[2] as string] as number);
      if (!(ms >= min && ms <= max)) throw new Error(`expected a duration such as 500ms, 30s or 5m, from ${min}ms to ${max}ms`);
      return ms;
    },
    { type: 'string', pattern: '^[0-9]+(ms|s|m|h)$' },
  );
}

export function oneOf<const T extends string>(...choices: T[]): Parser<T> {
  return parser(
    (text) => {
      if (!(choices as string[]).includes(text)) throw new Error(`expected one of ${choices.join(', ')}`);
      return text as T;
    },
    { type: 'string', enum: choices },
    choices,
  );
}

/** The items of a comma-separated list, trimmed, empty ones dropped. */
const splitList = (text: string): string[] =>
  text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');

/** A comma-separated list; empty text is an empty list. Each item must match `item`. */
export function list(item: RegExp, what: string): Parser<readonly string[]> {
  return parser(
    (text) => {
      const items = splitList(text);
      for (const value of items) if (!item.test(value)) throw new Error(`${JSON.stringify(value)} is not ${what}`);
      return Object.freeze(items);
    },
    { type: 'string', description: `comma-separated, each ${what}` },
  );
}

/**
 * A comma-separated list of distinct choices, in the order given (the order may matter, as for
 * --identify-by); empty text is an empty list unless `required`.
 */
export function choiceList<const T extends string>(required: boolean, ...choices: T[]): Parser<readonly T[]> {
  const one = `(${choices.map((c) => c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|')})`;
  return parser(
    (text) => {
      const items = splitList(text);
      if (required && items.length === 0) throw new Error(`expected one or more of ${choices.join(', ')}, comma-separated`);
      for (const value of items) {
        if (!(choices as string[]).includes(value)) throw new Error(`${JSON.stringify(value)} is not one of ${choices.join(', ')}`);
      }
      if (new Set(items).size !== items.length) throw new Error('a choice is listed twice');
      return Object.freeze(items as T[]);
    },
    {
      type: 'string',
      pattern: required ? `^\\s*${one}\\s*(,\\s*${one}\\s*)*$` : `^(\\s*${one}\\s*(,\\s*${one}\\s*)*)?$`,
      description: `comma-separated, each one of ${choices.join(', ')}`,
    },
    choices,
  );
}

/** A comma-separated list of IP networks (10.0.0.0/8, fd00::/64; a bare address is a single host). */
export const cidrList: Parser<readonly Cidr[]> = parser(
  (text) =>
    Object.freeze(
      text
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '')
        .map((item) => parseCidr(item)),
    ),
  { type: 'string', description: 'comma-separated IP networks such as 10.244.0.0/16' },
);

/** An absolute http or https URL, or empty for none. */
export const httpUrl: Parser<string> = parser(
  (text) => {
    if (text === '') return text;
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new Error('expected an absolute http or https URL');
    }
    if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.host === '')
      throw new Error('expected an absolute http or https URL');
    return text;
  },
  { type: 'string', pattern: '^(https?://.+)?$' },
);

/** An absolute https URL, or empty for none. */
export const httpsUrl: Parser<string> = parser(
  (text) => {
    if (text === '') return text;
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new Error('expected an absolute https URL');
    }
    if (url.protocol !== 'https:' || url.host === '') throw new Error('expected an absolute https URL');
    return text;
  },
  { type: 'string', pattern: '^(https://.+)?$' },
);

export const headerName: Parser<string> = parser(
  (text) => {
    if (!/^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(text)) throw new Error('expected a lower-case HTTP header name');
    return text;
  },
  { type: 'string', pattern: "^[a-z0-9!#$%&'*+.^_`|~-]+$" },
);

export const fileMode: Parser<number> = parser(
  (text) => {
    if (!/^0?[0-7]{3}$/.test(text)) throw new Error('expected an octal file mode such as 0660');
    return parseInt(text, 8);
  },
  { type: 'string', pattern: '^0?[0-7]{3}$' },
);
