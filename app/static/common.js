// What every page's script shares: element lookup, the JSON API call, times of day.
// ES modules loaded from files only: the Content-Security-Policy forbids inline code.

/** The element with this id. */
export const $ = (id) => document.getElementById(id);

/**
 * One call to the app's JSON API. Always resolves to {status, data, headers}: status 0 (and no
 * headers) when the network failed or nothing answered within timeoutMs. `token` goes in the
 * Authorization header (never in a URL); `body` is sent as JSON; `extraHeaders` are sent as given.
 */
export async function api(method, path, { body, token, timeoutMs = 10000, extraHeaders = {} } = {}) {
  const headers = { Accept: "application/json", ...extraHeaders };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), timeoutMs);
  try {
    const response = await fetch(path, {
      method, headers, credentials: "same-origin", cache: "no-store", signal: abort.signal,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({}));
    return { status: response.status, data: data || {}, headers: response.headers };
  } catch (err) {
    return { status: 0, data: { error: "network_error", message: `The app could not be reached (${err.name}).` } };
  } finally {
    clearTimeout(timer);
  }
}

/** Epoch seconds as this browser's time of day, HH:MM:SS. */
export const clock = (epochSeconds) => new Date(epochSeconds * 1000).toLocaleTimeString([],
  { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });

/** A count of seconds as m:ss (a countdown). */
export const minutesSeconds = (seconds) => `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
