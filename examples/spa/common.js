// Small helpers shared by the example pages (index.html and cookie.html).
// Everything is rendered with textContent, never innerHTML: task titles and
// error messages come from servers and are treated as text.

export const $ = (id) => {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element;
};

/**
 * The page's state, for people and for tests: "loading", "signed-out" or
 * "signed-in" in `<body data-state>`, the status line, and the elements
 * whose `data-show` names the state.
 */
export function setPageState(state, statusText) {
  document.body.dataset.state = state;
  $("status").textContent = statusText;
  for (const element of document.querySelectorAll("[data-show]")) {
    element.hidden = !element.dataset.show.split(" ").includes(state);
  }
}

export function showError(error) {
  const box = $("error");
  box.textContent = error instanceof Error ? error.message : String(error);
  box.hidden = false;
  console.error(error);
}

export function clearError() {
  const box = $("error");
  box.textContent = "";
  box.hidden = true;
}

/** base64url without padding (RFC 4648 §5), as PKCE and JWTs use it. */
export function b64url(bytes) {
  let binary = "";
  for (const byte of new Uint8Array(bytes)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** `n` random bytes from the browser's CSPRNG, base64url-encoded. */
export function randomString(n) {
  return b64url(crypto.getRandomValues(new Uint8Array(n)));
}

/**
 * The payload of a JWT, decoded but NOT verified. Enough for a browser app
 * to read its own ID token's `nonce` and name right after it came over TLS
 * from the token endpoint; any server that acts on a token verifies its
 * signature itself (the tasks API does, against latchkey's JWKS).
 */
export function decodeJwtPayload(jwt) {
  const part = typeof jwt === "string" ? jwt.split(".")[1] : undefined;
  if (!part) throw new Error("malformed token");
  const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
  const binary = atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4));
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

/** A readable message from an error response (`{error, error_description}` or text). */
export async function describeError(resp) {
  const text = await resp.text().catch(() => "");
  try {
    const body = JSON.parse(text);
    if (body && (body.error_description || body.error)) {
      return body.error_description || body.error;
    }
  } catch {
    // not JSON
  }
  return text.trim().slice(0, 200) || `HTTP ${resp.status}`;
}

/**
 * `fetch`, with a network failure explained. A request that a server
 * refuses to share with this origin (no CORS headers) also ends up here:
 * the browser hides the response from the page.
 */
export async function request(url, init, what) {
  try {
    return await fetch(url, init);
  } catch (e) {
    throw new Error(`${what}: could not reach ${new URL(url).origin} (network error, or the server does not allow this origin)`, { cause: e });
  }
}

/** The expiry time, and the seconds left ("10:42:07 (in 898 s)"). */
export function formatExpiry(expiresAt) {
  const date = new Date(expiresAt);
  return `${date.toLocaleTimeString()} (in ${Math.max(0, Math.round((expiresAt - Date.now()) / 1000))} s)`;
}

/**
 * Call `refresh` about a minute before `expiresIn` seconds run out (at half
 * the lifetime for very short tokens). Returns the timer id.
 */
export function scheduleRefresh(expiresIn, refresh) {
  const seconds = Math.max(expiresIn - 60, expiresIn / 2);
  return setTimeout(refresh, seconds * 1000);
}
