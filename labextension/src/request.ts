import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { errorFromBody, NeoAPIError } from './errors';

export { NeoAPIError };

/** The REST namespace of the jupyter-neo server extension. */
export const NAMESPACE = 'jupyter-neo';

/**
 * Call the jupyter-neo server extension.
 *
 * @param endPoint REST end point under `<baseUrl>/jupyter-neo/`
 * @param serverSettings The server settings to use for the request
 * @param init Initial values for the request
 * @returns The response body parsed as JSON
 * @throws NeoAPIError when the server answers an error status;
 *   ServerConnection.NetworkError when it cannot be reached
 */
export async function requestAPI<T>(
  endPoint: string,
  serverSettings: ServerConnection.ISettings,
  init: RequestInit = {}
): Promise<T> {
  const requestUrl = URLExt.join(serverSettings.baseUrl, NAMESPACE, endPoint);
  if (init.body !== undefined && init.body !== null) {
    const headers = new Headers(init.headers);
    if (!headers.has('Content-Type')) {
      headers.set('Content-Type', 'application/json');
    }
    init = { ...init, headers };
  }

  let response: Response;
  try {
    response = await ServerConnection.makeRequest(
      requestUrl,
      init,
      serverSettings
    );
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }

  const text = await response.text();
  let data: any = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      // Not JSON (an HTML error page, say): keep the text.
    }
  }

  if (!response.ok) {
    throw errorFromBody(response.status, data);
  }
  return data as T;
}
