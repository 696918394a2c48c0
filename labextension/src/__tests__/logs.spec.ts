import { LogFollower } from '../logs';
import type { ILogTail } from '../types';

/** Let the poll's promise chain run. */
const settle = () => new Promise(resolve => setTimeout(resolve, 20));

/** Wait (up to 3 s) until `pred` holds. */
async function until(pred: () => boolean): Promise<void> {
  const deadline = Date.now() + 3000;
  while (!pred()) {
    if (Date.now() > deadline) {
      throw new Error('timed out');
    }
    await settle();
  }
}

describe('LogFollower', () => {
  it('fetches the followed rank, again while active, once more when the run ends', async () => {
    const calls: string[] = [];
    let n = 0;
    const follower = new LogFollower({
      fetch: (id, rank, tail): Promise<ILogTail> => {
        calls.push(`${id}/${rank}/${tail}`);
        n += 1;
        return Promise.resolve({ rank, lines: [`line ${n}`] });
      },
      interval: 30,
      tail: 50
    });
    follower.follow('run-1', 2, true);
    expect(follower.view).toEqual({
      runId: 'run-1',
      rank: 2,
      lines: null,
      error: ''
    });
    await until(() => follower.view?.lines !== null);
    expect(follower.view?.lines).toEqual(['line 1']);
    await until(() => calls.length > 2);
    expect(calls.every(c => c === 'run-1/2/50')).toBe(true);

    // The run ends: one last fetch, then quiet.
    const before = calls.length;
    follower.follow('run-1', 2, false);
    await until(() => calls.length > before);
    await settle();
    const after = calls.length;
    await new Promise(resolve => setTimeout(resolve, 120));
    expect(calls.length).toBe(after);
    follower.dispose();
  });

  it('a newer target wins over an answer still in flight', async () => {
    const pending: ((tail: ILogTail) => void)[] = [];
    const follower = new LogFollower({
      fetch: (_id, rank) =>
        new Promise<ILogTail>(resolve => pending.push(resolve)).then(t => ({
          ...t,
          rank
        })),
      interval: 10000
    });
    follower.follow('run-1', 0, false);
    await until(() => pending.length === 1);
    follower.follow('run-1', 1, false);
    pending[0]({ rank: 0, lines: ['old rank 0'] });
    await settle();
    expect(follower.view?.rank).toBe(1);
    expect(follower.view?.lines).toBeNull();
    follower.dispose();
  });

  it('keeps the error of a failed fetch', async () => {
    const follower = new LogFollower({
      fetch: () => Promise.reject(new Error('run run-9 has no rank 7')),
      interval: 10000
    });
    follower.follow('run-9', 7, false);
    await until(() => follower.view?.error !== '');
    expect(follower.view?.error).toBe('run run-9 has no rank 7');
    follower.clear();
    expect(follower.view).toBeNull();
    follower.dispose();
  });
});
