/**
 * @jest-environment jsdom
 */
import { render, screen } from '@testing-library/react';
import * as React from 'react';

import { Reservations } from '../../components/Reservations';
import { reservation } from '../fixtures';

const noop = () => Promise.resolve();

describe('Reservations', () => {
  it('says when no GPUs are held', () => {
    render(
      <Reservations
        reservations={[]}
        now={0}
        onExtend={noop}
        onRelease={noop}
      />
    );
    expect(screen.getByTestId('neo-no-reservations').textContent).toBe(
      'No GPUs held.'
    );
  });

  it('lists each reservation once', () => {
    render(
      <Reservations
        reservations={[reservation(), reservation({ id: 'r-2', name: 'big' })]}
        now={0}
        onExtend={noop}
        onRelease={noop}
      />
    );
    const rows = screen.getAllByTestId('neo-reservation-row');
    expect(rows.map(r => r.dataset.reservationId)).toEqual(['r-1', 'r-2']);
    expect(rows[1].textContent).toContain('big');
  });
});
