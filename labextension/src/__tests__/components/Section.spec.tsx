/**
 * @jest-environment jsdom
 */
import { render, screen } from '@testing-library/react';
import * as React from 'react';

import { Section } from '../../components/Section';

describe('Section', () => {
  it('has a title, a count and its children', () => {
    render(
      <Section title="Runs" testid="neo-section-runs" count={3}>
        <p>body</p>
      </Section>
    );
    const section = screen.getByTestId('neo-section-runs');
    expect(section.querySelector('h3')?.textContent).toBe('Runs3');
    expect(screen.getByText('body')).toBeTruthy();
  });
});
