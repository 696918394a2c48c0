/**
 * @jest-environment jsdom
 */
import { fireEvent, render, screen, waitFor } from '@testing-library/react';
import * as React from 'react';

import { ReservationRow } from '../../components/ReservationRow';
import { reservation } from '../fixtures';

const NOW = Date.parse('2026-11-29T10:10:00Z');

function row(over = {}) {
  const onExtend = jest.fn(() => Promise.resolve());
  const onRelease = jest.fn(() => Promise.resolve());
  render(
    <ul>
      <ReservationRow
        reservation={reservation({ state: 'ready', ...over })}
        now={NOW}
        onExtend={onExtend}
        onRelease={onRelease}
      />
    </ul>
  );
  return { onExtend, onRelease };
}

describe('ReservationRow', () => {
  it('shows the shape, the price per hour and the cost so far', () => {
    row({ cost: 6.64 });
    const li = screen.getByTestId('neo-reservation-row');
    expect(li.dataset.state).toBe('ready');
    expect(li.textContent).toContain('2 \u00d7 8 H100');
    expect(screen.getByTestId('neo-reservation-rate').textContent).toBe(
      '$39.84/h'
    );
    expect(screen.getByTestId('neo-reservation-cost').textContent).toBe(
      '$6.64'
    );
  });

  it('counts down to the idle release the agents report', () => {
    row({ idle_release_at: '2026-11-29T10:22:30Z', busy: false });
    expect(screen.getByTestId('neo-reservation-ttl').textContent).toBe(
      'idle TTL 30m00s · release in 12m30s'
    );
  });

  it('says a busy gang does not count down', () => {
    row({ idle_release_at: null, busy: true });
    expect(screen.getByTestId('neo-reservation-ttl').textContent).toBe(
      'busy · idle TTL 30m00s'
    );
    expect(screen.queryByTestId('neo-reservation-idle-left')).toBeNull();
  });

  it('shows the budget and its countdown', () => {
    row({ budget: 50, cost: 10, deadline: '2026-11-29T10:11:00Z' });
    expect(screen.getByTestId('neo-reservation-cost').textContent).toBe(
      '$10.00 / $50.00'
    );
    const deadline = screen.getByTestId('neo-reservation-deadline');
    expect(deadline.textContent).toBe('budget 1m00s');
    expect(deadline.className).toContain('jp-mod-urgent');
  });

  it('hands Extend and Release to the caller and disables them meanwhile', async () => {
    let finish: () => void = () => undefined;
    const onRelease = jest.fn(
      () => new Promise<void>(resolve => (finish = resolve))
    );
    render(
      <ul>
        <ReservationRow
          reservation={reservation({ state: 'ready' })}
          now={NOW}
          onExtend={() => Promise.resolve()}
          onRelease={onRelease}
        />
      </ul>
    );
    const release = screen.getByTestId(
      'neo-reservation-release'
    ) as HTMLButtonElement;
    fireEvent.click(release);
    expect(onRelease).toHaveBeenCalledWith(
      expect.objectContaining({ id: 'r-1' })
    );
    await waitFor(() => expect(release.disabled).toBe(true));
    finish();
    await waitFor(() => expect(release.disabled).toBe(false));
  });

  it('shows the reason of a degraded gang', () => {
    row({ state: 'degraded', reason: 'pod r-1-1 stopped answering' });
    expect(screen.getByText('pod r-1-1 stopped answering')).toBeTruthy();
  });
});
