/**
 * @jest-environment jsdom
 */
import { render, screen } from '@testing-library/react';
import * as React from 'react';

import { NameCell, ScrollTable } from '../../components/Table';

function Fruit(props: { fruits: readonly string[] }): JSX.Element {
  return (
    <ScrollTable
      testid="fruits"
      rows={props.fruits}
      empty="No fruit."
      columns={[{ label: 'Fruit', title: 'its name' }, { label: 'Length' }]}
      row={f => (
        <tr key={f} data-testid="fruit-row">
          <NameCell name={f} sub={f.toUpperCase()} subTestid="fruit-sub" />
          <td>{f.length}</td>
        </tr>
      )}
    />
  );
}

describe('ScrollTable', () => {
  it('draws the header from the columns and one row per item, inside its scrolling box', () => {
    render(<Fruit fruits={['apple', 'fig']} />);
    const table = screen.getByTestId('fruits');
    expect(table.parentElement?.className).toBe('jp-neo-table-wrap');
    const heads = Array.from(table.querySelectorAll('th'));
    expect(heads.map(h => [h.textContent, h.getAttribute('title')])).toEqual([
      ['Fruit', 'its name'],
      ['Length', null]
    ]);
    const rows = screen.getAllByTestId('fruit-row');
    expect(rows.map(r => r.textContent)).toEqual(['appleAPPLE5', 'figFIG3']);
    expect(screen.getAllByTestId('fruit-sub')[1].className).toBe('jp-neo-sub');
  });

  it('says it is empty instead of drawing an empty table', () => {
    const { container } = render(<Fruit fruits={[]} />);
    expect(screen.getByText('No fruit.').className).toBe('jp-neo-empty');
    expect(container.querySelector('table')).toBeNull();
  });
});
