/**
 * @jest-environment jsdom
 */
import { act, fireEvent, render, screen } from '@testing-library/react';
import * as React from 'react';

import type { ILogView } from '../../logs';
import type { IRank, IRun } from '../../types';
import {
  ALL,
  IRunPanelProps,
  RunPanel,
  initialRank
} from '../../widget/RunPanel';
import { run } from '../fixtures';

const NOW = Date.parse('2026-11-29T10:01:30Z');

function ranks(over: Partial<IRank> = {}): IRank[] {
  return [0, 1, 2, 3].map(r => ({
    rank: r,
    node: Math.floor(r / 2),
    local_rank: r % 2,
    state: 'running' as const,
    exit_code: null,
    log: '',
    phase: 'running' as const,
    ...over
  }));
}

function panel(over: Partial<IRunPanelProps> = {}): IRunPanelProps {
  return {
    run: run({ ranks: ranks() }),
    status: 'running',
    notice: '',
    tail: ['[rank 0] step 1'],
    shown: [0],
    finished: false,
    view: null,
    follow: jest.fn(),
    onStop: jest.fn(() => Promise.resolve()),
    now: NOW,
    ...over
  };
}

describe('RunPanel', () => {
  it('before the run exists: its progress, no grid, no Stop', () => {
    render(<RunPanel {...panel({ run: {}, status: 'reserving 2 nodes' })} />);
    expect(screen.getByTestId('neo-run-widget-status').textContent).toBe(
      'reserving 2 nodes'
    );
    expect(screen.queryByTestId('neo-run-widget-grid')).toBeNull();
    expect(screen.queryByTestId('neo-run-widget-stop')).toBeNull();
  });

  it('says prominently that a new gang bills', () => {
    render(
      <RunPanel
        {...panel({
          notice: 'reserved a new gang r-1: 2 \u00d7 8 H100 on x: $39.84/h'
        })}
      />
    );
    expect(screen.getByTestId('neo-run-widget-notice').textContent).toContain(
      '$39.84/h'
    );
  });

  it('draws a cell per rank with its phase, grouped by node', () => {
    const importing = ranks();
    importing[3] = { ...importing[3], phase: 'importing' };
    render(<RunPanel {...panel({ run: run({ ranks: importing }) })} />);
    const cells = screen.getAllByTestId('neo-run-widget-rank');
    expect(cells.map(c => c.textContent)).toEqual([
      'rank 0: running',
      'rank 1: running',
      'rank 2: running',
      'rank 3: importing'
    ]);
    expect(screen.getByTestId('neo-run-widget-grid').textContent).toContain(
      'node 1'
    );
  });

  it('Stop calls the server with the run id and says it is stopping', async () => {
    const onStop = jest.fn(() => new Promise<void>(() => undefined));
    render(<RunPanel {...panel({ onStop })} />);
    const stop = screen.getByTestId('neo-run-widget-stop') as HTMLButtonElement;
    await act(async () => {
      fireEvent.click(stop);
    });
    expect(onStop).toHaveBeenCalledWith('run-1');
    expect(stop.disabled).toBe(true);
    expect(stop.textContent).toBe('Stopping\u2026');
  });

  it('a finished run has no Stop button, only its state', () => {
    render(
      <RunPanel
        {...panel({
          run: run({
            ranks: ranks({ state: 'stopped' }),
            state: 'stopped',
            exit_code: 130,
            ended: '2026-11-29T10:01:20Z',
            error: 'stopped on request; every rank was stopped'
          }),
          finished: true
        })}
      />
    );
    expect(screen.queryByTestId('neo-run-widget-stop')).toBeNull();
    expect(screen.getByTestId('neo-run-widget-state').textContent).toBe(
      'stopped'
    );
    expect(screen.getByTestId('neo-run-widget-error').textContent).toBe(
      'stopped on request; every rank was stopped'
    );
  });

  it('shows the merged tail for "all" and follows a single rank through the server', () => {
    const follow = jest.fn();
    const view: ILogView = {
      runId: 'run-1',
      rank: 2,
      lines: ['rank 2 step 9'],
      error: ''
    };
    const { rerender } = render(
      <RunPanel {...panel({ shown: [], follow, tail: ['[rank 3] hi'] })} />
    );
    expect(screen.getByTestId('neo-run-log-lines').textContent).toBe(
      '[rank 3] hi'
    );
    expect(follow).not.toHaveBeenCalled();
    fireEvent.change(screen.getByTestId('neo-run-rank'), {
      target: { value: '2' }
    });
    expect(follow).toHaveBeenLastCalledWith('run-1', 2, true);
    rerender(<RunPanel {...panel({ shown: [], follow, view })} />);
    expect(screen.getByTestId('neo-run-log-lines').textContent).toBe(
      'rank 2 step 9'
    );
  });

  it('failure first: the culprit is selected, with the error head in red', () => {
    const follow = jest.fn();
    const failed: IRun = run({
      ranks: ranks({ state: 'stopped' }),
      state: 'failed',
      exit_code: 1,
      failed_rank: 3,
      error: 'rank 3 on node 1 (r-1-1) failed\nValueError: boom'
    });
    render(<RunPanel {...panel({ run: failed, follow, finished: true })} />);
    expect(follow).toHaveBeenLastCalledWith('run-1', 3, false);
    expect(
      (screen.getByTestId('neo-run-rank') as HTMLSelectElement).value
    ).toBe('3');
    const error = screen.getByTestId('neo-run-widget-error');
    expect(error.textContent).toBe('rank 3 on node 1 (r-1-1) failed');
    expect(error.className).toContain('jp-mod-error');
  });

  it('a hot iteration not applied is neutral, not a crash', () => {
    const why =
      'not applied: syntax error at train_ddp.py:30 \u2014 ranks still run generation 2';
    render(
      <RunPanel
        {...panel({
          run: run({
            ranks: ranks(),
            state: 'failed',
            exit_code: 1,
            failed_rank: 0,
            not_applied: why,
            error: why
          }),
          finished: true
        })}
      />
    );
    expect(screen.getByTestId('neo-run-widget-state').textContent).toBe(
      'not applied'
    );
    const error = screen.getByTestId('neo-run-widget-error');
    expect(error.textContent).toBe(why);
    expect(error.className).not.toContain('jp-mod-error');
    expect(screen.getAllByTestId('neo-run-widget-rank')[0].textContent).toBe(
      'rank 0: kept'
    );
  });

  it('initialRank: one shown rank, else all', () => {
    expect(initialRank([2])).toBe(2);
    expect(initialRank([])).toBe(ALL);
    expect(initialRank([0, 3])).toBe(ALL);
  });
});
