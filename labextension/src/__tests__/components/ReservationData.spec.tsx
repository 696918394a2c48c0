/**
 * @jest-environment jsdom
 */
import { render, screen } from '@testing-library/react';
import * as React from 'react';

import { ReservationData } from '../../components/ReservationData';

describe('ReservationData', () => {
  it('names each dataset, read-only or writable, with where ranks find it', () => {
    render(
      <ReservationData
        datasets={[
          {
            name: 'clinical-eu',
            read_only: true,
            present: true,
            path: '/data/clinical-eu'
          },
          {
            name: 'scratch',
            read_only: false,
            present: true,
            path: '/data/scratch'
          },
          { name: 'web', read_only: true, present: false, path: null }
        ]}
      />
    );
    const items = screen.getAllByTestId('neo-reservation-dataset');
    expect(items.map(i => i.textContent)).toEqual([
      'clinical-eu ro',
      'scratch rw',
      'web (absent)'
    ]);
    expect(items[0].title).toBe('/data/clinical-eu (read-only)');
    expect(items[2].title).toBe(
      'web is not on this cluster: copy it there first'
    );
  });

  it('shows nothing for a reservation without datasets', () => {
    const { container } = render(<ReservationData datasets={[]} />);
    expect(container.textContent).toBe('');
  });
});
