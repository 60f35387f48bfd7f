// The cookie-mode page: latchkey's JSON API (`/auth/*`) from a first-party
// browser app, with the refresh token in a cookie instead of in JavaScript.
//
// - Login, refresh and logout send `token_delivery: "cookie"` and
//   `credentials: "include"`. latchkey then sets the refresh token as an
//   HttpOnly, SameSite=Strict cookie on its `/auth` path and leaves it out of
//   the JSON body. No script on this page can read it.
// - The access token is kept in memory only, and sent as a Bearer token.
// - A reload forgets the access token, but the cookie survives: on load the
//   page refreshes once to resume the session.
// - latchkey accepts the cookie only with an `Origin` on its CORS allow-list
//   (LATCHKEY_CORS_ORIGINS) and a JSON body, which a cross-site form cannot
//   send.
//
// This mode requires the page and latchkey to be SAME-SITE (for example
// app.example.com and id.example.com, or 127.0.0.1:8082 and 127.0.0.1:8080
// as in the demo): browsers do not send a SameSite=Strict cookie on a
// cross-site request, and block it as a third-party cookie anyway. For an
// app on another site, use authorization code + PKCE (index.html).

import { config } from "./config.js";
import {
  $, clearError, describeError, formatExpiry, request, scheduleRefresh, setPageState, showError,
} from "./common.js";

let access = null; // the access token, in memory only
let refreshTimer = null;
let refreshing = null;
let refreshCount = 0;

/** A JSON POST to latchkey's `/auth` API that sends and receives the cookie. */
function postAuth(path, body, what) {
  return request(`${config.issuer}/auth${path}`, {
    method: "POST",
    credentials: "include",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...body, token_delivery: "cookie" }),
  }, what);
}

/** Keep a token response (its refresh token is in the cookie, not here). */
function accept(body) {
  access = body.access_token;
  clearTimeout(refreshTimer);
  refreshTimer = scheduleRefresh(body.expires_in, () => refresh().catch(showError));
  const expiresAt = Date.now() + body.expires_in * 1000;
  const expiry = $("token-expiry");
  expiry.dateTime = new Date(expiresAt).toISOString();
  expiry.textContent = formatExpiry(expiresAt);
}

function forget(statusText) {
  clearTimeout(refreshTimer);
  access = null;
  $("me").textContent = "";
  setPageState("signed-out", statusText);
}

function countRefresh() {
  refreshCount += 1;
  $("refresh-count").textContent = String(refreshCount);
}

async function showMe() {
  const resp = await request(`${config.issuer}/auth/me`, {
    headers: { authorization: `Bearer ${access}` },
  }, "Loading your account");
  if (!resp.ok) throw new Error(`Loading your account failed: ${await describeError(resp)}`);
  const me = await resp.json();
  $("me").textContent = me.username;
  setPageState("signed-in", `Signed in as ${me.username}`);
}

async function login(event) {
  event.preventDefault();
  clearError();
  const username = $("username").value;
  const password = $("password");
  const button = $("login");
  button.disabled = true;
  try {
    const resp = await postAuth("/login", { username, password: password.value }, "Sign-in");
    if (!resp.ok) {
      password.value = "";
      password.focus();
      throw new Error(`Sign-in failed: ${await describeError(resp)}`);
    }
    password.value = "";
    accept(await resp.json());
    await showMe();
  } finally {
    button.disabled = false;
  }
}

class NoSession extends Error {
  constructor(reason) {
    super(`No session to refresh (${reason}). Please sign in.`);
  }
}

/** Refresh with the cookie; one refresh is in flight at a time. */
function refresh() {
  refreshing ??= doRefresh().finally(() => { refreshing = null; });
  return refreshing;
}

/**
 * Without an access token in memory this resumes a session (after a
 * reload); with one it renews it, and counts in #refresh-count. Throws
 * NoSession when there is nothing to refresh (no cookie, or it ended).
 */
async function doRefresh() {
  const resuming = access === null;
  const resp = await postAuth("/refresh", {}, "Refresh");
  if (resp.status === 400 || resp.status === 401) {
    const reason = await describeError(resp);
    if (!resuming) forget("Not signed in");
    throw new NoSession(reason);
  }
  if (!resp.ok) throw new Error(`Refresh failed: ${await describeError(resp)}`);
  accept(await resp.json());
  if (!resuming) countRefresh();
}

async function refreshNow() {
  clearError();
  await refresh();
  if ($("me").textContent === "") await showMe();
}

async function logout() {
  clearError();
  const resp = await postAuth("/logout", {}, "Sign-out");
  // Whatever the answer, this page forgets the access token.
  forget(resp.ok ? "Signed out" : "Not signed in");
  if (!resp.ok) throw new Error(`Sign-out failed: ${await describeError(resp)}`);
}

async function main() {
  $("login-form").addEventListener("submit", (event) => login(event).catch(showError));
  $("refresh").addEventListener("click", () => refreshNow().catch(showError));
  $("logout").addEventListener("click", () => logout().catch(showError));
  // Resume: the cookie may still hold a session from before a reload.
  try {
    await refresh();
    await showMe();
  } catch (e) {
    setPageState("signed-out", "Not signed in");
    if (!(e instanceof NoSession)) throw e;
  }
}

main().catch(showError);
