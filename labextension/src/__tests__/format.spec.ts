import {
  countdown,
  formatAge,
  formatCommand,
  formatDuration,
  formatIdleTtl,
  formatMemory,
  formatMoney,
  formatRate,
  formatShape,
  podUtilisation,
  runDuration
} from '../format';
import { reservation, run } from './fixtures';

const T0 = Date.parse('2026-11-29T10:00:00Z');

describe('formatMoney', () => {
  it.each([
    [0, '$0.00'],
    [0.42, '$0.42'],
    [2.499, '$2.50'],
    [1234.5, '$1,234.50'],
    [1234567.891, '$1,234,567.89'],
    [0.001, '<$0.01'],
    [-3.5, '-$3.50']
  ])('formats %p as %p', (usd, text) => {
    expect(formatMoney(usd)).toBe(text);
  });

  it('shows a dash for missing values', () => {
    expect(formatMoney(null)).toBe('\u2014');
    expect(formatMoney(undefined)).toBe('\u2014');
    expect(formatMoney(NaN)).toBe('\u2014');
  });

  it('formats a rate per hour', () => {
    expect(formatRate(19.92)).toBe('$19.92/h');
    expect(formatRate(null)).toBe('\u2014');
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [12.9, '12s'],
    [60, '1m00s'],
    [250, '4m10s'],
    [3900, '1h05m'],
    [86400 + 3 * 3600 + 59, '1d03h'],
    [-5, '0s']
  ])('formats %p seconds as %p like the CLI', (seconds, text) => {
    expect(formatDuration(seconds)).toBe(text);
  });

  it('writes no limit as a dash', () => {
    expect(formatDuration(null)).toBe('-');
  });
});

describe('age and countdown', () => {
  it('measures the age of a reservation', () => {
    expect(formatAge('2026-11-29T10:00:00Z', T0 + 90_000)).toBe('1m30s');
    expect(formatAge(null, T0)).toBe('\u2014');
    expect(formatAge('not a date', T0)).toBe('\u2014');
  });

  it('counts down to a deadline', () => {
    const c = countdown('2026-11-29T10:30:00Z', T0);
    expect(c).toEqual({ text: '30m00s', seconds: 1800, urgent: false });
  });

  it('marks the last two minutes urgent', () => {
    const c = countdown('2026-11-29T10:01:30Z', T0);
    expect(c.text).toBe('1m30s');
    expect(c.urgent).toBe(true);
  });

  it('says expiring once past', () => {
    expect(countdown('2026-11-29T09:59:00Z', T0)).toEqual({
      text: 'expiring',
      seconds: 0,
      urgent: true
    });
  });

  it('writes the idle TTL, or that there is none', () => {
    expect(formatIdleTtl(1800)).toBe('idle TTL 30m00s');
    expect(formatIdleTtl(7200)).toBe('idle TTL 2h00m');
    expect(formatIdleTtl(null)).toBe('no idle TTL');
  });

  it('shows a dash without a time to count to', () => {
    expect(countdown(null, T0)).toEqual({
      text: '\u2014',
      seconds: null,
      urgent: false
    });
  });
});

describe('runs and reservations', () => {
  it('measures a running run up to now', () => {
    expect(runDuration(run(), T0 + 5 * 60_000)).toBe('4m00s');
  });

  it('measures a finished run up to its end', () => {
    const done = run({ state: 'succeeded', ended: '2026-11-29T11:01:05Z' });
    expect(runDuration(done, T0 + 10 * 3600_000)).toBe('1h00m');
  });

  it('writes the shape of a gang', () => {
    expect(formatShape(reservation())).toBe('2 \u00d7 8 H100');
  });

  it('shortens long commands', () => {
    expect(formatCommand(['a', 'b'])).toBe('a b');
    expect(formatCommand(['x'.repeat(100)], 10)).toBe('xxxxxxxxx\u2026');
  });

  it('averages GPU utilisation and ignores unknown GPUs', () => {
    const pod = {
      name: 'p',
      rank: 0,
      address: '',
      state: 'ready',
      gpus: [0, 1, 2],
      stats: {
        gpus: [
          { index: 0, util: 50 },
          { index: 1, util: 100 },
          { index: 2, util: null }
        ],
        loadavg: [1, 1, 1]
      }
    };
    expect(podUtilisation(pod)).toBe(75);
    expect(podUtilisation({ ...pod, stats: undefined })).toBeNull();
    expect(
      podUtilisation({
        ...pod,
        stats: { gpus: [{ index: 0, util: null }], loadavg: [] }
      })
    ).toBeNull();
  });

  it('formats GPU memory in GiB', () => {
    expect(formatMemory(8 * 1024 ** 3, 80 * 1024 ** 3)).toBe('8.0 / 80.0 GiB');
    expect(formatMemory(undefined, 80)).toBe('');
  });
});
