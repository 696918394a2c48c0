/**
 * @jest-environment jsdom
 */
import { fireEvent, render, screen } from '@testing-library/react';
import * as React from 'react';

import { Runs, errorHead } from '../../components/Runs';
import { run } from '../fixtures';

const NOW = Date.parse('2026-11-29T10:02:00Z');

describe('Runs', () => {
  it('says when there are none', () => {
    render(
      <Runs
        runs={[]}
        now={NOW}
        selected={null}
        onSelect={jest.fn()}
        renderDetail={() => null}
      />
    );
    expect(screen.getByText('No runs yet.')).toBeTruthy();
  });

  it('lists runs in the order given, with a readable name and the exit code', () => {
    render(
      <Runs
        runs={[
          run({ id: 'run-2', label: 'cell [3]: train()' }),
          run({ id: 'run-1', state: 'succeeded', exit_code: 0 })
        ]}
        now={NOW}
        selected={null}
        onSelect={jest.fn()}
        renderDetail={() => null}
      />
    );
    const rows = screen.getAllByTestId('neo-run-row');
    expect(rows.map(r => r.dataset.runId)).toEqual(['run-2', 'run-1']);
    expect(screen.getAllByTestId('neo-run-name')[0].textContent).toBe(
      'cell [3]: train()'
    );
    expect(screen.getAllByTestId('neo-run-exit-code')[1].textContent).toBe(
      'exit 0'
    );
  });

  it('opens and closes a run with a click or the keyboard', () => {
    const onSelect = jest.fn();
    const { rerender } = render(
      <Runs
        runs={[run()]}
        now={NOW}
        selected={null}
        onSelect={onSelect}
        renderDetail={r => <div data-testid="detail">{r.id}</div>}
      />
    );
    fireEvent.click(screen.getByRole('button'));
    expect(onSelect).toHaveBeenLastCalledWith('run-1');
    rerender(
      <Runs
        runs={[run()]}
        now={NOW}
        selected="run-1"
        onSelect={onSelect}
        renderDetail={r => <div data-testid="detail">{r.id}</div>}
      />
    );
    expect(screen.getByTestId('detail').textContent).toBe('run-1');
    fireEvent.keyDown(screen.getByRole('button'), { key: 'Enter' });
    expect(onSelect).toHaveBeenLastCalledWith(null);
  });

  it("shows a failure's first line, and a skipped hot iteration as neutral", () => {
    render(
      <Runs
        runs={[
          run({
            id: 'run-f',
            state: 'failed',
            exit_code: 1,
            error: 'rank 3 on node 1 failed\nValueError: boom'
          }),
          run({
            id: 'run-h',
            state: 'failed',
            exit_code: 1,
            not_applied:
              'not applied: syntax error at train_ddp.py:30 \u2014 ranks still run generation 2'
          })
        ]}
        now={NOW}
        selected={null}
        onSelect={jest.fn()}
        renderDetail={() => null}
      />
    );
    const errors = screen.getAllByTestId('neo-run-error');
    expect(errors[0].textContent).toBe('rank 3 on node 1 failed');
    expect(errors[0].className).toContain('jp-mod-error');
    expect(errors[1].textContent).toContain('not applied: syntax error');
    expect(errors[1].className).not.toContain('jp-mod-error');
    expect(screen.getAllByTestId('neo-run-state')[1].textContent).toBe(
      'not applied'
    );
  });

  it('errorHead reads the first line', () => {
    expect(errorHead(run({ error: 'a\nb' }))).toBe('a');
  });
});
