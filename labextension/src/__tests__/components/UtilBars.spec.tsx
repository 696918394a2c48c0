/**
 * @jest-environment jsdom
 */
import { render, screen } from '@testing-library/react';
import * as React from 'react';

import { UtilBars } from '../../components/UtilBars';
import { reservation } from '../fixtures';

describe('UtilBars', () => {
  it('shows nothing for pods without stats', () => {
    const { container } = render(<UtilBars pods={reservation().pods} />);
    expect(container.innerHTML).toBe('');
  });

  it('draws a bar per GPU and the mean per pod', () => {
    const [p0, p1] = reservation().pods;
    const pods = [
      {
        ...p0,
        stats: {
          loadavg: [0, 0, 0],
          gpus: [
            { index: 0, util: 20, mem_used: 2 ** 30, mem_total: 8 * 2 ** 30 },
            { index: 1, util: 60 }
          ]
        }
      },
      { ...p1, stats: { loadavg: [0, 0, 0], gpus: [{ index: 0, util: null }] } }
    ];
    render(<UtilBars pods={pods} />);
    const bars = screen.getAllByTestId('neo-util-bar');
    expect(bars).toHaveLength(3);
    expect(bars[0].title).toContain('1.0 / 8.0 GiB');
    const text = screen.getByTestId('neo-util').textContent ?? '';
    expect(text).toContain('40%');
    expect(text).toContain('n/a');
  });
});
