/**
 * Small React hooks shared by the sidebar's components.
 */
import * as React from 'react';

import { NeoAPIError } from '../errors';

/**
 * The current time, re-rendered every `ms` while mounted. A clock for
 * countdowns and ages only: data is fetched by the model's polls, never by a
 * component's timer.
 */
export function useNow(ms = 1000): number {
  const [now, setNow] = React.useState(() => Date.now());
  React.useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), ms);
    return () => window.clearInterval(timer);
  }, [ms]);
  return now;
}

/** The message of an error from the server or the network, for a user. */
export function errorMessage(error: unknown): string {
  if (error instanceof NeoAPIError) {
    return error.message;
  }
  return String((error as Error)?.message ?? error);
}
