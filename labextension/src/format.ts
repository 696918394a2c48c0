/**
 * Formatting for the sidebar: money, durations, ages and countdowns.
 * Durations follow the CLI's `format_duration` (`1h05m`, `4m10s`, `12s`).
 */
import type { IPod, IReservation, IRun } from './types';

const DASH = '\u2014';

/** US dollars: `$0.42`, `$1,234.50`; `<$0.01` for tiny non-zero amounts. */
export function formatMoney(usd: number | null | undefined): string {
  if (usd === null || usd === undefined || !Number.isFinite(usd)) {
    return DASH;
  }
  const sign = usd < 0 ? '-' : '';
  const abs = Math.abs(usd);
  if (abs > 0 && abs < 0.005) {
    return `${sign}<$0.01`;
  }
  const [whole, cents] = abs.toFixed(2).split('.');
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return `${sign}$${grouped}.${cents}`;
}

/** A price per hour: `$19.92/h`. */
export function formatRate(usdPerHour: number | null | undefined): string {
  const money = formatMoney(usdPerHour);
  return money === DASH ? money : `${money}/h`;
}

/**
 * Seconds to a compact duration: `12s`, `4m10s`, `1h05m`, `2d03h`;
 * `-` when there is no limit (null).
 */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) {
    return '-';
  }
  const s = Math.floor(Math.max(0, seconds));
  const pad = (n: number) => String(n).padStart(2, '0');
  if (s >= 86400) {
    return `${Math.floor(s / 86400)}d${pad(Math.floor((s % 86400) / 3600))}h`;
  }
  if (s >= 3600) {
    return `${Math.floor(s / 3600)}h${pad(Math.floor((s % 3600) / 60))}m`;
  }
  if (s >= 60) {
    return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
  }
  return `${s}s`;
}

/** Milliseconds since the epoch of an ISO 8601 string, or NaN. */
export function parseTime(iso: string | null | undefined): number {
  if (!iso) {
    return NaN;
  }
  return Date.parse(iso);
}

/** How long ago `iso` was, as a duration (`4m10s`); a dash if unknown. */
export function formatAge(iso: string | null | undefined, now: number): string {
  const t = parseTime(iso);
  if (Number.isNaN(t)) {
    return DASH;
  }
  return formatDuration((now - t) / 1000);
}

/** `idle TTL 30m00s`, or `no idle TTL` for a reservation kept until released. */
export function formatIdleTtl(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) {
    return 'no idle TTL';
  }
  return `idle TTL ${formatDuration(seconds)}`;
}

export interface ICountdown {
  /** What to show: `12m04s`, `expiring`, or a dash for no TTL. */
  text: string;
  /** Seconds left (0 when past), or null without a time to count to. */
  seconds: number | null;
  /** Less than two minutes left. */
  urgent: boolean;
}

/** A countdown towards `expiresAt` (a reservation's budget `deadline`). */
export function countdown(
  expiresAt: string | null | undefined,
  now: number
): ICountdown {
  const t = parseTime(expiresAt);
  if (Number.isNaN(t)) {
    return { text: DASH, seconds: null, urgent: false };
  }
  const left = Math.max(0, (t - now) / 1000);
  if (left < 1) {
    return { text: 'expiring', seconds: 0, urgent: true };
  }
  return { text: formatDuration(left), seconds: left, urgent: left < 120 };
}

/** How long a run has been going, or went: `started` to `ended` (or now). */
export function runDuration(run: IRun, now: number): string {
  const start = parseTime(run.started);
  if (Number.isNaN(start)) {
    return DASH;
  }
  const end = run.ended ? parseTime(run.ended) : now;
  return formatDuration(((Number.isNaN(end) ? now : end) - start) / 1000);
}

/** `2 × 8 H100` */
export function formatShape(r: IReservation): string {
  const type = r.gpu_type ? ` ${r.gpu_type}` : '';
  return `${r.nodes} \u00d7 ${r.gpus_per_node}${type}`;
}

/** GPUs of a reservation. */
export function reservationGpus(r: IReservation): number {
  return r.nodes * r.gpus_per_node;
}

/**
 * Mean GPU utilisation (0-100) of a pod, or null when it has no stats or
 * every GPU reports null.
 */
export function podUtilisation(pod: IPod): number | null {
  const gpus = pod.stats?.gpus ?? [];
  const values = gpus
    .map(g => g.util)
    .filter((u): u is number => typeof u === 'number' && Number.isFinite(u));
  if (values.length === 0) {
    return null;
  }
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return Math.min(100, Math.max(0, mean));
}

/** `12.3 / 80.0 GiB` from bytes, or '' when unknown. */
export function formatMemory(used?: number, total?: number): string {
  if (typeof used !== 'number' || typeof total !== 'number' || total <= 0) {
    return '';
  }
  const gib = (b: number) => (b / 1024 ** 3).toFixed(1);
  return `${gib(used)} / ${gib(total)} GiB`;
}

/** `torchrun train.py --lr 3e-4`, shortened to `max` characters. */
export function formatCommand(command: string[], max = 60): string {
  const text = command.join(' ');
  return text.length > max ? `${text.slice(0, max - 1)}\u2026` : text;
}
