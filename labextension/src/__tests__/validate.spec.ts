import { EMPTY_FORM, parseDuration, validateReserveForm } from '../validate';

const form = (over = {}) => ({ ...EMPTY_FORM, ...over });

describe('parseDuration', () => {
  it.each([
    ['90s', 90],
    ['30m', 1800],
    ['1h30m', 5400],
    ['2d', 172800],
    ['1w', 604800],
    ['1.5h', 5400],
    ['45', 45],
    [' 10M ', 600]
  ])('reads %p as %p seconds', (text, seconds) => {
    expect(parseDuration(text)).toBe(seconds);
  });

  it.each(['none', 'never', '0', ''])('reads %p as no limit', text => {
    expect(parseDuration(text)).toBeNull();
  });

  it.each(['30 minutes', 'h', '1h 30m', '-5m', '5x', 'm5'])(
    'rejects %p',
    text => {
      expect(parseDuration(text)).toBeUndefined();
    }
  );
});

describe('validateReserveForm', () => {
  it('builds the smallest request from the defaults', () => {
    expect(validateReserveForm(EMPTY_FORM)).toEqual({
      request: { gpus: 8, idle_ttl: '30m' },
      errors: {}
    });
  });

  it('builds a full request, trimming text and dropping "cheapest"', () => {
    const { request, errors } = validateReserveForm(
      form({
        gpus: ' 16 ',
        nodes: '2',
        gpuType: ' H100 ',
        cluster: 'slurm-a',
        region: 'eu-west',
        maxPrice: '3.5',
        idleTtl: '1h',
        name: 'train-7b',
        budget: '100'
      })
    );
    expect(errors).toEqual({});
    expect(request).toEqual({
      gpus: 16,
      nodes: 2,
      gpu_type: 'H100',
      cluster: 'slurm-a',
      region: 'eu-west',
      max_price: 3.5,
      idle_ttl: '1h',
      name: 'train-7b',
      budget: 100
    });
  });

  it('lets placement pick the cluster when it is "cheapest" or empty', () => {
    expect(
      validateReserveForm(form({ cluster: 'cheapest' })).request
    ).not.toHaveProperty('cluster');
    expect(
      validateReserveForm(form({ cluster: '' })).request
    ).not.toHaveProperty('cluster');
  });

  it.each(['0', '-1', '1.5', 'eight', ''])('rejects %p GPUs', gpus => {
    const { request, errors } = validateReserveForm(form({ gpus }));
    expect(request).toBeNull();
    expect(errors.gpus).toMatch(/whole number/);
  });

  it('rejects GPUs that do not split evenly over the nodes', () => {
    const { request, errors } = validateReserveForm(
      form({ gpus: '10', nodes: '4' })
    );
    expect(request).toBeNull();
    expect(errors.nodes).toBe('10 GPUs do not split evenly over 4 nodes.');
  });

  it('rejects a zero node count', () => {
    expect(validateReserveForm(form({ nodes: '0' })).errors.nodes).toMatch(
      /at least 1/
    );
  });

  it.each(['0', '-2', 'cheap', '1e3'])(
    'rejects a max price of %p',
    maxPrice => {
      expect(validateReserveForm(form({ maxPrice })).errors.maxPrice).toMatch(
        /greater than 0/
      );
    }
  );

  it('rejects an unreadable idle TTL and accepts "none"', () => {
    expect(
      validateReserveForm(form({ idleTtl: 'soon' })).errors.idleTtl
    ).toMatch(/30m/);
    expect(validateReserveForm(form({ idleTtl: 'none' })).request).toEqual({
      gpus: 8,
      idle_ttl: 'none'
    });
  });

  it('omits an empty idle TTL so the server default applies', () => {
    expect(validateReserveForm(form({ idleTtl: '  ' })).request).toEqual({
      gpus: 8
    });
  });

  it('checks names like the server does', () => {
    expect(validateReserveForm(form({ name: 'Bad_Name' })).errors.name).toMatch(
      /lower-case/
    );
    expect(validateReserveForm(form({ name: 'ok-1' })).request?.name).toBe(
      'ok-1'
    );
  });

  it('reports every bad field at once', () => {
    const { errors } = validateReserveForm(
      form({ gpus: 'x', maxPrice: '-1', idleTtl: '?', budget: '0' })
    );
    expect(Object.keys(errors).sort()).toEqual([
      'budget',
      'gpus',
      'idleTtl',
      'maxPrice'
    ]);
  });
});
