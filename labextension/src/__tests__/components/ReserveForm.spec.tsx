/**
 * @jest-environment jsdom
 */
import { act, fireEvent, render, screen } from '@testing-library/react';
import * as React from 'react';

import { PREVIEW_DELAY_MS, ReserveForm } from '../../components/ReserveForm';
import { NeoAPIError } from '../../errors';
import { cluster, preview, reservation } from '../fixtures';

function fill(testid: string, value: string): void {
  fireEvent.change(screen.getByTestId(testid), { target: { value } });
}

describe('ReserveForm', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('has inputs for every field, name and budget included', () => {
    render(<ReserveForm clusters={[cluster()]} onReserve={jest.fn()} />);
    for (const id of [
      'gpus',
      'nodes',
      'gpu-type',
      'cluster',
      'region',
      'max-price',
      'idle-ttl',
      'budget',
      'name'
    ]) {
      expect(screen.getByTestId(`neo-form-${id}`)).toBeTruthy();
    }
  });

  it('sends the request with name and budget, then says what it reserved', async () => {
    const onReserve = jest.fn(() =>
      Promise.resolve(reservation({ name: 'exp1', state: 'ready' }))
    );
    render(<ReserveForm clusters={[cluster()]} onReserve={onReserve} />);
    fill('neo-form-gpus', '16');
    fill('neo-form-nodes', '2');
    fill('neo-form-name', 'exp1');
    fill('neo-form-budget', '25');
    await act(async () => {
      fireEvent.click(screen.getByTestId('neo-form-submit'));
    });
    expect(onReserve).toHaveBeenCalledWith({
      gpus: 16,
      nodes: 2,
      idle_ttl: '30m',
      name: 'exp1',
      budget: 25
    });
    expect(screen.getByTestId('neo-form-notice').textContent).toContain(
      'Reserved exp1'
    );
  });

  it('shows field errors inline and does not ask the server', async () => {
    const onReserve = jest.fn();
    render(<ReserveForm clusters={[cluster()]} onReserve={onReserve} />);
    fill('neo-form-name', 'Not A Name');
    fill('neo-form-budget', '-3');
    await act(async () => {
      fireEvent.click(screen.getByTestId('neo-form-submit'));
    });
    expect(onReserve).not.toHaveBeenCalled();
    expect(screen.getByTestId('neo-form-error-name').textContent).toContain(
      'lower-case'
    );
    expect(screen.getByTestId('neo-form-error-budget')).toBeTruthy();
  });

  it("shows the server's refusal inline", async () => {
    const onReserve = jest.fn(() =>
      Promise.reject(new NeoAPIError(409, 'no_capacity', 'no capacity'))
    );
    render(<ReserveForm clusters={[cluster()]} onReserve={onReserve} />);
    await act(async () => {
      fireEvent.click(screen.getByTestId('neo-form-submit'));
    });
    expect(screen.getByTestId('neo-form-error').textContent).toContain(
      'no capacity'
    );
  });

  it('prices the request once typing pauses, the newest form winning', async () => {
    const onPreview = jest.fn(() => Promise.resolve(preview()));
    render(
      <ReserveForm
        clusters={[cluster()]}
        onReserve={jest.fn()}
        onPreview={onPreview}
      />
    );
    fill('neo-form-gpus', '1');
    fill('neo-form-gpus', '16');
    fill('neo-form-nodes', '2');
    expect(screen.getByTestId('neo-form-preview-loading')).toBeTruthy();
    await act(async () => {
      jest.advanceTimersByTime(PREVIEW_DELAY_MS + 10);
    });
    expect(onPreview).toHaveBeenCalledTimes(1);
    expect(onPreview).toHaveBeenCalledWith({
      gpus: 16,
      nodes: 2,
      idle_ttl: '30m'
    });
    expect(screen.getByTestId('neo-form-preview').textContent).toContain(
      '$39.84/h'
    );
  });

  it('does not price an invalid form, and shows a refusal to place', async () => {
    const onPreview = jest.fn(() =>
      Promise.reject(
        new NeoAPIError(400, 'invalid', 'no cluster has 4096 GPUs')
      )
    );
    render(
      <ReserveForm
        clusters={[cluster()]}
        onReserve={jest.fn()}
        onPreview={onPreview}
      />
    );
    await act(async () => {
      jest.advanceTimersByTime(PREVIEW_DELAY_MS + 10);
    });
    onPreview.mockClear();
    fill('neo-form-gpus', 'x');
    await act(async () => {
      jest.advanceTimersByTime(PREVIEW_DELAY_MS + 10);
    });
    expect(onPreview).not.toHaveBeenCalled();
    fill('neo-form-gpus', '4096');
    await act(async () => {
      jest.advanceTimersByTime(PREVIEW_DELAY_MS + 10);
    });
    expect(screen.getByTestId('neo-form-preview-error').textContent).toContain(
      '4096'
    );
  });
});
