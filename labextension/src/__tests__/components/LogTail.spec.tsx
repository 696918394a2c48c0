/**
 * @jest-environment jsdom
 */
import { fireEvent, render, screen } from '@testing-library/react';
import * as React from 'react';

import { LogTail } from '../../components/LogTail';

/** jsdom has no layout: give the pane a size and a scroll height. */
function layout(el: HTMLElement, scrollHeight: number, clientHeight = 100) {
  Object.defineProperty(el, 'scrollHeight', {
    configurable: true,
    get: () => scrollHeight
  });
  Object.defineProperty(el, 'clientHeight', {
    configurable: true,
    get: () => clientHeight
  });
}

const lines = (n: number) => [...Array(n).keys()].map(i => `step ${i}`);

describe('LogTail', () => {
  it('shows loading, then the lines, then a placeholder for none', () => {
    const props = { ranks: [0, 1], rank: 0, onRank: jest.fn() };
    const { rerender } = render(<LogTail {...props} lines={null} />);
    expect(screen.getByTestId('neo-run-log-lines').textContent).toBe(
      'Loading\u2026'
    );
    rerender(<LogTail {...props} lines={['a', 'b']} />);
    expect(screen.getByTestId('neo-run-log-lines').textContent).toBe('a\nb');
    rerender(<LogTail {...props} lines={[]} />);
    expect(screen.getByTestId('neo-run-log-lines').textContent).toBe(
      '(no output yet)'
    );
  });

  it('switches rank through the selector and marks the culprit', () => {
    const onRank = jest.fn();
    render(
      <LogTail
        ranks={[0, 1, 2, 3]}
        rank={3}
        culprit={3}
        lines={['boom']}
        onRank={onRank}
      />
    );
    const select = screen.getByTestId('neo-run-rank') as HTMLSelectElement;
    expect(select.value).toBe('3');
    expect(select.selectedOptions[0].textContent).toBe('3 (failed first)');
    fireEvent.change(select, { target: { value: '2' } });
    expect(onRank).toHaveBeenCalledWith(2);
  });

  it('offers Stop only when given', () => {
    const onStop = jest.fn();
    const { rerender } = render(
      <LogTail ranks={[0]} rank={0} lines={[]} onRank={jest.fn()} />
    );
    expect(screen.queryByTestId('neo-run-stop')).toBeNull();
    rerender(
      <LogTail
        ranks={[0]}
        rank={0}
        lines={[]}
        onRank={jest.fn()}
        onStop={onStop}
      />
    );
    fireEvent.click(screen.getByTestId('neo-run-stop'));
    expect(onStop).toHaveBeenCalled();
  });

  it('follows the tail unless the user scrolled up', () => {
    const props = { ranks: [0], rank: 0, onRank: jest.fn() };
    const { rerender } = render(<LogTail {...props} lines={lines(5)} />);
    const pane = screen.getByTestId('neo-run-log-lines');
    layout(pane, 400);
    rerender(<LogTail {...props} lines={lines(10)} />);
    expect(pane.scrollTop).toBe(400);

    // The user scrolls up to read: new lines do not move the pane.
    pane.scrollTop = 50;
    fireEvent.scroll(pane);
    layout(pane, 600);
    rerender(<LogTail {...props} lines={lines(20)} />);
    expect(pane.scrollTop).toBe(50);

    // Back at the bottom: following again.
    pane.scrollTop = 500;
    fireEvent.scroll(pane);
    layout(pane, 800);
    rerender(<LogTail {...props} lines={lines(30)} />);
    expect(pane.scrollTop).toBe(800);
  });

  it('shows an error instead of lines', () => {
    render(
      <LogTail
        ranks={[0]}
        rank={0}
        lines={null}
        error="run run-9 has no rank 4"
        onRank={jest.fn()}
      />
    );
    expect(screen.getByTestId('neo-run-log-error').textContent).toContain(
      'no rank 4'
    );
  });
});
