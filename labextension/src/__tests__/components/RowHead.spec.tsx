/**
 * @jest-environment jsdom
 */
import { fireEvent, render, screen } from '@testing-library/react';
import * as React from 'react';

import { RowHead } from '../../components/RowHead';

describe('RowHead', () => {
  it('shows the name, the state badge and what the row adds, and is no button without onActivate', () => {
    const { container } = render(
      <RowHead name="train" nameTitle="r-1" state="ready" badgeTestid="badge">
        <span>extra</span>
      </RowHead>
    );
    const head = container.firstElementChild as HTMLElement;
    expect(head.className).toBe('jp-neo-row-head');
    expect(head.getAttribute('role')).toBeNull();
    expect(head.getAttribute('tabindex')).toBeNull();
    expect(screen.getByText('train').title).toBe('r-1');
    const badge = screen.getByTestId('badge');
    expect(badge.textContent).toBe('ready');
    expect(badge.className).toBe('jp-neo-badge jp-neo-state-ready');
    expect(head.textContent).toBe('trainreadyextra');
  });

  it('works as a button by click, Enter and Space when it opens something', () => {
    const activate = jest.fn();
    render(
      <RowHead
        name="run-1"
        state="not-applied"
        badge="not applied"
        badgeTestid="badge"
        onActivate={activate}
      />
    );
    const head = screen.getByRole('button');
    expect(head.className).toBe('jp-neo-row-head jp-neo-clickable');
    expect(head.tabIndex).toBe(0);
    expect(screen.getByTestId('badge').textContent).toBe('not applied');
    fireEvent.click(head);
    fireEvent.keyDown(head, { key: 'Enter' });
    fireEvent.keyDown(head, { key: ' ' });
    fireEvent.keyDown(head, { key: 'a' });
    expect(activate).toHaveBeenCalledTimes(3);
  });
});
