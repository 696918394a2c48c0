/**
 * The Reserve form: its raw values, the checks a user can fix before asking
 * the server, and the request body. The server validates again and its
 * message is shown as is; these checks only save a round trip.
 */
import type { IReserveRequest } from './types';

/** What the form's inputs hold, as typed. */
export interface IReserveForm {
  gpus: string;
  nodes: string;
  gpuType: string;
  /** A cluster name, or '' / 'cheapest' to let placement pick. */
  cluster: string;
  region: string;
  maxPrice: string;
  idleTtl: string;
  name?: string;
  budget?: string;
}

export type ReserveFormField = keyof IReserveForm;

export const CHEAPEST = 'cheapest';

export const EMPTY_FORM: IReserveForm = {
  gpus: '8',
  nodes: '',
  gpuType: '',
  cluster: CHEAPEST,
  region: '',
  maxPrice: '',
  idleTtl: '30m',
  name: '',
  budget: ''
};

export interface IValidation {
  /** The request body when there is no error. */
  request: IReserveRequest | null;
  /** One message per field that needs fixing. */
  errors: Partial<Record<ReserveFormField, string>>;
}

const UNITS: Record<string, number> = {
  s: 1,
  m: 60,
  h: 3600,
  d: 86400,
  w: 604800
};

/**
 * Parse a human duration the way the server does (`90s`, `30m`, `1h30m`,
 * `2d`, plain seconds; `none`/`never`/`0` for no limit).
 *
 * @returns seconds, null for "no limit", or undefined when unreadable.
 */
export function parseDuration(text: string): number | null | undefined {
  const raw = text.trim().toLowerCase();
  if (raw === '' || raw === 'none' || raw === 'never' || raw === '0') {
    return null;
  }
  if (/^\d+(\.\d+)?$/.test(raw)) {
    return Number(raw) || null;
  }
  const part = /(\d+(?:\.\d+)?)([smhdw])/y;
  let total = 0;
  let pos = 0;
  while (pos < raw.length) {
    part.lastIndex = pos;
    const match = part.exec(raw);
    if (!match) {
      return undefined;
    }
    total += Number(match[1]) * UNITS[match[2]];
    pos = part.lastIndex;
  }
  return total;
}

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$/;

function positiveInt(text: string): number | undefined {
  const t = text.trim();
  if (!/^\d+$/.test(t)) {
    return undefined;
  }
  const n = Number(t);
  return n >= 1 && Number.isSafeInteger(n) ? n : undefined;
}

function positiveNumber(text: string): number | undefined {
  const t = text.trim();
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(t)) {
    return undefined;
  }
  const n = Number(t);
  return n > 0 ? n : undefined;
}

/** Check the form and build the `POST reservations` body. */
export function validateReserveForm(form: IReserveForm): IValidation {
  const errors: IValidation['errors'] = {};
  const request: IReserveRequest = { gpus: 0 };

  const gpus = positiveInt(form.gpus);
  if (gpus === undefined) {
    errors.gpus = 'GPUs must be a whole number of at least 1.';
  } else {
    request.gpus = gpus;
  }

  if (form.nodes.trim()) {
    const nodes = positiveInt(form.nodes);
    if (nodes === undefined) {
      errors.nodes = 'Nodes must be a whole number of at least 1.';
    } else if (gpus !== undefined && gpus % nodes !== 0) {
      errors.nodes = `${gpus} GPUs do not split evenly over ${nodes} nodes.`;
    } else {
      request.nodes = nodes;
    }
  }

  const gpuType = form.gpuType.trim();
  if (gpuType) {
    request.gpu_type = gpuType;
  }
  const cluster = form.cluster.trim();
  if (cluster && cluster !== CHEAPEST) {
    request.cluster = cluster;
  }
  const region = form.region.trim();
  if (region) {
    request.region = region;
  }

  if (form.maxPrice.trim()) {
    const price = positiveNumber(form.maxPrice);
    if (price === undefined) {
      errors.maxPrice = 'Max price is USD per GPU-hour, greater than 0.';
    } else {
      request.max_price = price;
    }
  }

  if (form.idleTtl.trim()) {
    if (parseDuration(form.idleTtl) === undefined) {
      errors.idleTtl = 'Write the idle TTL like 90s, 30m, 1h30m, 2d or none.';
    } else {
      request.idle_ttl = form.idleTtl.trim();
    }
  }

  const name = (form.name ?? '').trim();
  if (name) {
    if (!NAME_RE.test(name)) {
      errors.name =
        "Names are lower-case letters, digits and '-' (at most 40 characters).";
    } else {
      request.name = name;
    }
  }

  if ((form.budget ?? '').trim()) {
    const budget = positiveNumber(form.budget ?? '');
    if (budget === undefined) {
      errors.budget = 'Budget is a USD amount greater than 0.';
    } else {
      request.budget = budget;
    }
  }

  return {
    request: Object.keys(errors).length === 0 ? request : null,
    errors
  };
}
