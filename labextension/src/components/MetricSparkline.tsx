import { sparkline } from '@fnando/sparkline/dist/sparkline.commonjs2.js';
import * as React from 'react';

import type { IRun } from '../types';

/** How many of the latest steps the sparkline shows. */
export const SPARK_POINTS = 60;

export interface IMetricSummary {
  name: string;
  /** The mean over the reporting ranks at each step, oldest first (at most SPARK_POINTS). */
  values: number[];
  last: number;
}

/**
 * The metric a run's row shows: `loss` when the run logs one, else the first
 * metric logged (`jupyter_neo.log(step=..., name=value)` on the ranks).
 */
export function metricSummary(run: IRun): IMetricSummary | null {
  const records = run.metrics ?? [];
  const names = new Set<string>();
  for (const r of records) {
    for (const [k, v] of Object.entries(r)) {
      if (!['rank', 'step', 'time'].includes(k) && typeof v === 'number') {
        names.add(k);
      }
    }
  }
  if (names.size === 0) {
    return null;
  }
  const name = names.has('loss') ? 'loss' : [...names][0];
  const bySteps = new Map<number, number[]>();
  records.forEach((r, i) => {
    const value = r[name];
    if (typeof value !== 'number') {
      return;
    }
    const step = typeof r.step === 'number' ? r.step : i;
    bySteps.set(step, [...(bySteps.get(step) ?? []), value]);
  });
  const values = [...bySteps.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([, v]) => v.reduce((s, x) => s + x, 0) / v.length)
    .slice(-SPARK_POINTS);
  return { name, values, last: values[values.length - 1] };
}

/** A run's training metric in its row: the last value and a sparkline. */
export function MetricSparkline(props: { run: IRun }): JSX.Element | null {
  const summary = metricSummary(props.run);
  const svg = React.useRef<SVGSVGElement>(null);
  const key = summary ? summary.values.join(',') : '';
  React.useEffect(() => {
    if (svg.current && summary && summary.values.length > 1) {
      sparkline(svg.current, summary.values);
    }
  }, [key]);
  if (!summary) {
    return null;
  }
  return (
    <span
      className="jp-neo-metric"
      data-testid="neo-run-metric"
      title={`${summary.name} over the last ${summary.values.length} steps`}
    >
      {summary.name} {summary.last.toPrecision(4)}
      <svg
        ref={svg}
        className="jp-neo-sparkline"
        width="64"
        height="14"
        strokeWidth="1"
      />
    </span>
  );
}
