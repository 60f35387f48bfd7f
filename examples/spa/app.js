// The example single-page app: a public OAuth client of latchkey.
//
// 1. Discovery: everything is found from the issuer URL
//    (`{issuer}/.well-known/openid-configuration`).
// 2. Sign-in: authorization code + PKCE (RFC 7636, S256 with WebCrypto).
//    `code_verifier`, `state` and `nonce` are kept in sessionStorage for the
//    redirect round trip only, and removed as soon as the callback reads them.
// 3. The callback (this same page, `<origin>/`) checks `state` and `iss`
//    (RFC 9207: the response names the issuer that sent it), exchanges the
//    code at the token endpoint with the verifier, and checks the ID token's
//    `nonce`.
// 4. Tokens live in this module's memory only, never in localStorage or
//    sessionStorage, where any script that ever runs on this origin (an
//    injected one included) could read them later. The trade-off: a reload
//    or a new tab forgets them. Signing in again is then one click on
//    latchkey's "Continue as …" page, without a password, while the browser
//    session at latchkey lasts (LATCHKEY_SESSION_TTL). There is no hidden
//    iframe for silent renewal: latchkey's pages forbid framing.
// 5. Refresh: `grant_type=refresh_token` about 60 s before the access token
//    expires (and on "Refresh now"). Refresh tokens rotate: each response
//    carries the next one, and only one refresh is in flight at a time.
// 6. Sign-out: revoke the refresh token (which ends its session and the
//    access tokens issued from it), then RP-initiated logout at the
//    end_session_endpoint, which ends the browser session at latchkey and
//    comes back here with our `state`.
//
// Needs a secure context for WebCrypto: https, or http on loopback.

import { config } from "./config.js";
import {
  $, b64url, clearError, decodeJwtPayload, describeError, formatExpiry, randomString, request,
  scheduleRefresh, setPageState, showError,
} from "./common.js";

const SCOPE = "openid profile tasks:read tasks:write";
const PENDING_SIGN_IN = "latchkey-example:sign-in";
const PENDING_SIGN_OUT = "latchkey-example:sign-out";
// Registered with latchkey as this client's redirect URI and post-logout redirect URI.
const REDIRECT_URI = new URL("/", location.origin).href;

let provider = null; // the discovery document
let tokens = null; // { access, refresh, id, expiresAt } — memory only
let refreshTimer = null;
let refreshing = null; // the refresh in flight, if any
let refreshCount = 0;

async function discover() {
  const resp = await request(`${config.issuer}/.well-known/openid-configuration`, {}, "Discovery");
  if (!resp.ok) throw new Error(`Discovery failed: ${await describeError(resp)}`);
  const doc = await resp.json();
  // OIDC Discovery §4.3: the document must name the issuer we asked.
  if (doc.issuer !== config.issuer) {
    throw new Error(`Discovery names issuer ${doc.issuer}, expected ${config.issuer}`);
  }
  if (!(doc.code_challenge_methods_supported || []).includes("S256")) {
    throw new Error("The provider does not support PKCE with S256");
  }
  return doc;
}

/** A form-encoded POST (RFC 6749 §3.2), as the token and revocation endpoints expect. */
function postForm(url, fields, what) {
  return request(url, { method: "POST", body: new URLSearchParams(fields) }, what);
}

/** Read and forget a value kept for a redirect round trip. */
function take(key) {
  const value = sessionStorage.getItem(key);
  sessionStorage.removeItem(key);
  return value;
}

// ---- sign-in ------------------------------------------------------------

async function signIn() {
  clearError();
  const verifier = randomString(32); // 43 characters (RFC 7636 §4.1)
  const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const pending = { verifier, state: randomString(16), nonce: randomString(16), redirectUri: REDIRECT_URI };
  sessionStorage.setItem(PENDING_SIGN_IN, JSON.stringify(pending));
  const url = new URL(provider.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: config.clientId,
    redirect_uri: REDIRECT_URI,
    scope: SCOPE,
    state: pending.state,
    nonce: pending.nonce,
    code_challenge: challenge,
    code_challenge_method: "S256",
  }).toString();
  setPageState("loading", "Signing in…");
  location.assign(url.href);
}

async function finishSignIn(params) {
  setPageState("loading", "Signing in…");
  const saved = take(PENDING_SIGN_IN);
  if (!saved) throw new Error("This tab did not start that sign-in. Please sign in again.");
  const pending = JSON.parse(saved);
  if (params.get("state") !== pending.state) {
    throw new Error("The sign-in response does not match the request (state). Please sign in again.");
  }
  // RFC 9207: without this check, another provider this app uses could
  // inject its response (a mix-up attack).
  if (params.get("iss") !== provider.issuer) {
    throw new Error("The sign-in response came from an unexpected issuer.");
  }
  if (params.has("error")) {
    throw new Error(`Sign-in failed: ${params.get("error_description") || params.get("error")}`);
  }
  const resp = await postForm(provider.token_endpoint, {
    grant_type: "authorization_code",
    code: params.get("code") || "",
    redirect_uri: pending.redirectUri,
    client_id: config.clientId,
    code_verifier: pending.verifier,
  }, "Sign-in");
  if (!resp.ok) throw new Error(`Sign-in failed: ${await describeError(resp)}`);
  const body = await resp.json();
  // The ID token came straight from the token endpoint over TLS, so the app
  // reads it without verifying its signature (OIDC Core §3.1.3.7 allows
  // this for a direct token response). Any backend that acts on a token
  // must verify it; the tasks API does.
  const claims = decodeJwtPayload(body.id_token);
  if (claims.nonce !== pending.nonce) throw new Error("The ID token does not match the request (nonce).");
  const audience = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (claims.iss !== provider.issuer || !audience.includes(config.clientId)) {
    throw new Error("The ID token is not for this app.");
  }
  accept(body);
  setPageState("signed-in", `Signed in as ${claims.preferred_username || claims.sub}`);
  $("sign-out").disabled = false;
  await loadTasks();
}

// ---- tokens -------------------------------------------------------------

/** Keep a token response in memory and plan its refresh. */
function accept(body) {
  tokens = {
    access: body.access_token,
    // Rotation: each response carries the next refresh token.
    refresh: body.refresh_token || tokens?.refresh || null,
    id: body.id_token || tokens?.id || null,
    expiresAt: Date.now() + body.expires_in * 1000,
  };
  clearTimeout(refreshTimer);
  if (tokens.refresh) {
    refreshTimer = scheduleRefresh(body.expires_in, () => refresh().catch(showError));
  }
  const expiry = $("token-expiry");
  expiry.dateTime = new Date(tokens.expiresAt).toISOString();
  expiry.textContent = formatExpiry(tokens.expiresAt);
}

function forget() {
  clearTimeout(refreshTimer);
  tokens = null;
  $("tasks").replaceChildren();
}

/** One refresh at a time: a second caller shares the first one's result. */
function refresh() {
  refreshing ??= doRefresh().finally(() => { refreshing = null; });
  return refreshing;
}

async function doRefresh() {
  if (!tokens?.refresh) throw new Error("Not signed in.");
  const resp = await postForm(provider.token_endpoint, {
    grant_type: "refresh_token",
    refresh_token: tokens.refresh,
    client_id: config.clientId,
  }, "Refresh");
  if (!resp.ok) {
    const reason = await describeError(resp);
    if (resp.status === 400 || resp.status === 401) {
      // invalid_grant: the session ended (signed out elsewhere, revoked, expired).
      forget();
      showSignedOut("Not signed in");
      throw new Error(`Your session has ended (${reason}). Please sign in again.`);
    }
    throw new Error(`Refresh failed: ${reason}`);
  }
  accept(await resp.json());
  refreshCount += 1;
  $("refresh-count").textContent = String(refreshCount);
}

// ---- the tasks API ------------------------------------------------------

/** Call the tasks API with the access token; on a 401, refresh once and retry. */
async function api(method, path, body) {
  const call = () => {
    if (!tokens) throw new Error("Not signed in.");
    const headers = { authorization: `Bearer ${tokens.access}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    return request(`${config.tasksApi}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    }, "The tasks API");
  };
  let resp = await call();
  if (resp.status === 401 && tokens?.refresh) {
    await refresh();
    resp = await call();
  }
  if (!resp.ok) throw new Error(`The tasks API answered ${resp.status}: ${await describeError(resp)}`);
  return resp.status === 204 ? null : resp.json();
}

async function loadTasks() {
  const list = $("tasks");
  list.setAttribute("aria-busy", "true");
  try {
    const tasks = await api("GET", "/tasks");
    list.replaceChildren(...tasks.map((task) => {
      const item = document.createElement("li");
      item.textContent = task.done ? `${task.title} (done)` : task.title;
      item.dataset.id = String(task.id);
      return item;
    }));
    $("no-tasks").hidden = tasks.length > 0;
  } finally {
    list.removeAttribute("aria-busy");
  }
}

async function addTask(event) {
  event.preventDefault();
  clearError();
  const input = $("task-title");
  const title = input.value.trim();
  if (!title) {
    input.focus();
    return;
  }
  const button = $("add-task");
  button.disabled = true;
  try {
    await api("POST", "/tasks", { title });
    input.value = "";
    await loadTasks();
  } finally {
    button.disabled = false;
    input.focus();
  }
}

// ---- sign-out -----------------------------------------------------------

async function signOut() {
  clearError();
  const { refresh: refreshToken, id: idToken } = tokens || {};
  forget();
  $("sign-out").disabled = true;
  setPageState("loading", "Signing out…");
  if (refreshToken) {
    // RFC 7009. Failing here is not fatal: the token is gone from memory,
    // and logout below ends the browser session at latchkey either way.
    try {
      const resp = await postForm(provider.revocation_endpoint, {
        token: refreshToken,
        token_type_hint: "refresh_token",
        client_id: config.clientId,
      }, "Revocation");
      if (!resp.ok) console.warn("revocation failed:", await describeError(resp));
    } catch (e) {
      console.warn(e);
    }
  }
  const state = randomString(16);
  sessionStorage.setItem(PENDING_SIGN_OUT, state);
  const url = new URL(provider.end_session_endpoint);
  const params = new URLSearchParams({
    client_id: config.clientId,
    post_logout_redirect_uri: REDIRECT_URI,
    state,
  });
  if (idToken) params.set("id_token_hint", idToken);
  url.search = params.toString();
  location.assign(url.href);
}

function finishSignOut(params) {
  const expected = take(PENDING_SIGN_OUT);
  showSignedOut(expected && params.get("state") === expected ? "Signed out" : "Not signed in");
}

// ---- the page -----------------------------------------------------------

function showSignedOut(statusText) {
  setPageState("signed-out", statusText);
  $("sign-in").disabled = provider === null;
}

async function main() {
  $("sign-in").addEventListener("click", () => signIn().catch(showError));
  $("sign-out").addEventListener("click", () => signOut().catch(showError));
  $("refresh").addEventListener("click", () => {
    clearError();
    refresh().catch(showError);
  });
  $("task-form").addEventListener("submit", (event) => addTask(event).catch(showError));
  // Back from latchkey's page without signing in: the browser may restore
  // this page as it was left ("Signing in…") from its back-forward cache.
  addEventListener("pageshow", (event) => {
    if (event.persisted && !tokens) showSignedOut("Not signed in");
  });

  const params = new URLSearchParams(location.search);
  // The code, state and iss are single-use: take them out of the address
  // bar and the history at once.
  if (location.search) history.replaceState(null, "", location.pathname);
  try {
    provider = await discover();
  } catch (e) {
    showSignedOut("Not signed in");
    throw e;
  }
  if (params.has("code") || params.has("error")) {
    try {
      await finishSignIn(params);
    } catch (e) {
      if (!tokens) showSignedOut("Not signed in");
      throw e;
    }
  } else if (params.has("state")) {
    finishSignOut(params);
  } else {
    showSignedOut("Not signed in");
  }
}

main().catch(showError);
