/**
 * @jest-environment jsdom
 */
import { render, screen } from '@testing-library/react';
import * as React from 'react';

import { StatusBanner } from '../../components/StatusBanner';

describe('StatusBanner', () => {
  it('says nothing when all is well', () => {
    const { container } = render(<StatusBanner status="ok" error="" />);
    expect(container.innerHTML).toBe('');
  });

  it('names the fix when the server extension is missing', () => {
    render(<StatusBanner status="missing" error="404" />);
    expect(screen.getByTestId('neo-missing-extension').textContent).toContain(
      'jupyter server extension list'
    );
  });

  it('shows the error as the server wrote it', () => {
    render(<StatusBanner status="error" error="store is locked" />);
    expect(screen.getByTestId('neo-error').textContent).toBe('store is locked');
  });

  it('says it retries when offline', () => {
    render(<StatusBanner status="offline" error="" />);
    expect(screen.getByTestId('neo-offline').textContent).toContain('retrying');
  });
});
