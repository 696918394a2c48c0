/**
 * @jest-environment jsdom
 */
import { render, screen } from '@testing-library/react';
import * as React from 'react';

import { PodDots } from '../../components/PodDots';
import { reservation } from '../fixtures';

describe('PodDots', () => {
  it('draws one dot per pod with its state', () => {
    const pods = reservation().pods.map((p, i) =>
      i === 1 ? { ...p, state: 'lost' as const } : p
    );
    render(<PodDots pods={pods} />);
    const dots = screen.getAllByTestId('neo-pod-dot');
    expect(dots.map(d => d.dataset.state)).toEqual(['pending', 'lost']);
    expect(dots[1].title).toContain('rank 1');
  });
});
