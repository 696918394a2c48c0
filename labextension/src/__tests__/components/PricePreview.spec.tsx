/**
 * @jest-environment jsdom
 */
import { render, screen } from '@testing-library/react';
import * as React from 'react';

import { PricePreview } from '../../components/PricePreview';
import { preview } from '../fixtures';

describe('PricePreview', () => {
  it("shows the server's sentence", () => {
    render(<PricePreview preview={preview()} error="" loading={false} />);
    expect(screen.getByTestId('neo-form-preview').textContent).toBe(
      preview().text
    );
  });

  it('shows why a request cannot be placed', () => {
    render(
      <PricePreview preview={null} error="no cluster fits" loading={false} />
    );
    expect(screen.getByTestId('neo-form-preview-error').textContent).toBe(
      'no cluster fits'
    );
  });

  it('says it is pricing while it waits, and nothing when idle', () => {
    const { rerender, container } = render(
      <PricePreview preview={null} error="" loading={true} />
    );
    expect(screen.getByTestId('neo-form-preview-loading')).toBeTruthy();
    rerender(<PricePreview preview={null} error="" loading={false} />);
    expect(container.innerHTML).toBe('');
  });
});
