/**
 * @jest-environment jsdom
 */
import { render, screen } from '@testing-library/react';
import * as React from 'react';

import {
  MetricSparkline,
  SPARK_POINTS,
  metricSummary
} from '../../components/MetricSparkline';
import { run } from '../fixtures';

const losses = (n: number) =>
  Array.from({ length: n }, (_, i) => ({
    rank: 0,
    step: i,
    loss: 1 / (i + 1)
  }));

describe('metricSummary', () => {
  it('is null without metrics', () => {
    expect(metricSummary(run({}))).toBeNull();
  });

  it('prefers loss, averages ranks per step and keeps the latest points', () => {
    const records = [
      ...losses(SPARK_POINTS + 10),
      { rank: 0, step: 1, grad: 3 },
      { rank: 1, step: 1, grad: 5 }
    ];
    const summary = metricSummary(run({ metrics: records }));
    expect(summary?.name).toBe('loss');
    expect(summary?.values).toHaveLength(SPARK_POINTS);
    expect(summary?.last).toBeCloseTo(1 / (SPARK_POINTS + 10));
    const grad = metricSummary(run({ metrics: records.slice(-2) }));
    expect(grad).toEqual({ name: 'grad', values: [4], last: 4 });
  });
});

describe('MetricSparkline', () => {
  it('renders nothing for a run without metrics', () => {
    const { container } = render(<MetricSparkline run={run({})} />);
    expect(container.innerHTML).toBe('');
  });

  it('shows the last value and draws the curve', () => {
    render(<MetricSparkline run={run({ metrics: losses(20) })} />);
    const cell = screen.getByTestId('neo-run-metric');
    expect(cell.textContent).toContain('loss 0.05000');
    const path = cell.querySelector('svg path');
    expect(path?.getAttribute('d')).toMatch(/^M/);
  });
});
