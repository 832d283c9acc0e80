// What rest.js and sockets.js share about AUTH (open | token): the setting, the request
// headers of a user, and the setup probe that the server runs the mode AUTH names.
import http from 'k6/http';
import { fail } from 'k6';

export const AUTH = __ENV.AUTH || 'open';
export const TOKEN_MODE = AUTH === 'token';
if (!['open', 'token'].includes(AUTH)) {
  throw new Error(`AUTH must be open or token, not ${AUTH}`);
}

export const JSON_HEADERS = { 'Content-Type': 'application/json' };

/** Headers of a request acting as the user whose token this is (none: AUTH=open). */
export function headers(token) {
  return token ? { ...JSON_HEADERS, Authorization: `Bearer ${token}` } : JSON_HEADERS;
}

/** Stops the test unless the server runs the mode AUTH names (token: GET /users is 401 without a token). */
export function expectAuthMode(baseUrl) {
  const res = http.get(`${baseUrl}/users?limit=1`, {
    tags: { name: 'setup: GET /users without a token' },
    // Whatever it answers, it is a probe, not a failure.
    responseCallback: http.expectedStatuses({ min: 100, max: 599 }),
  });
  if (TOKEN_MODE && res.status !== 401) {
    fail(
      `AUTH=token, but ${baseUrl} answers GET /users without a token with ${res.status}, ` +
        'not 401: start it with --auth token (AUTH=token), or run without AUTH=token',
    );
  }
  if (!TOKEN_MODE && res.status === 401) {
    fail(`${baseUrl} wants a bearer token (AUTH=token on the server): run with AUTH=token`);
  }
}
