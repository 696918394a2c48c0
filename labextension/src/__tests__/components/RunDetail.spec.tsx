/**
 * @jest-environment jsdom
 */
import { fireEvent, render, screen } from '@testing-library/react';
import * as React from 'react';

import { RunDetail, runRanks } from '../../components/RunDetail';
import type { ILogView } from '../../logs';
import { run } from '../fixtures';

const ranks = [0, 1, 2, 3].map(r => ({
  rank: r,
  node: Math.floor(r / 2),
  local_rank: r % 2,
  state: 'running' as const,
  exit_code: null,
  log: ''
}));

describe('RunDetail', () => {
  it('follows rank 0 of an active run and offers Stop', () => {
    const follow = jest.fn();
    const onStop = jest.fn();
    const view: ILogView = {
      runId: 'run-1',
      rank: 0,
      lines: ['hi'],
      error: ''
    };
    render(
      <RunDetail
        run={run({ ranks })}
        view={view}
        follow={follow}
        onStop={onStop}
      />
    );
    expect(follow).toHaveBeenLastCalledWith('run-1', 0, true);
    expect(screen.getByTestId('neo-run-log-lines').textContent).toBe('hi');
    fireEvent.click(screen.getByTestId('neo-run-stop'));
    expect(onStop).toHaveBeenCalledWith('run-1');
  });

  it('selects the culprit of a failure first, with no Stop', () => {
    const follow = jest.fn();
    const failed = run({
      ranks,
      state: 'failed',
      exit_code: 1,
      failed_rank: 3
    });
    render(
      <RunDetail run={failed} view={null} follow={follow} onStop={jest.fn()} />
    );
    expect(follow).toHaveBeenLastCalledWith('run-1', 3, false);
    expect(
      (screen.getByTestId('neo-run-rank') as HTMLSelectElement).value
    ).toBe('3');
    expect(screen.queryByTestId('neo-run-stop')).toBeNull();
  });

  it('jumps to the culprit when a run it shows fails, then lets the user choose', () => {
    const follow = jest.fn();
    const { rerender } = render(
      <RunDetail
        run={run({ ranks })}
        view={null}
        follow={follow}
        onStop={jest.fn()}
      />
    );
    rerender(
      <RunDetail
        run={run({ ranks, state: 'failed', failed_rank: 2 })}
        view={null}
        follow={follow}
        onStop={jest.fn()}
      />
    );
    expect(follow).toHaveBeenLastCalledWith('run-1', 2, false);
    fireEvent.change(screen.getByTestId('neo-run-rank'), {
      target: { value: '1' }
    });
    expect(follow).toHaveBeenLastCalledWith('run-1', 1, false);
  });

  it('shows only lines of the followed rank', () => {
    const view: ILogView = { runId: 'run-1', rank: 1, lines: ['x'], error: '' };
    render(
      <RunDetail
        run={run({ ranks })}
        view={view}
        follow={jest.fn()}
        onStop={jest.fn()}
      />
    );
    expect(screen.getByTestId('neo-run-log-lines').textContent).toBe(
      'Loading\u2026'
    );
  });

  it('runRanks falls back to the shape before ranks are known', () => {
    expect(runRanks(run({ nodes: 2, nproc_per_node: 2 }))).toEqual([
      0, 1, 2, 3
    ]);
  });
});
