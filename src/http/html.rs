//! The few server-rendered pages: sign-in, "Continue as …", sign-out, errors.
//!
//! Plain HTML and one inline style sheet, nothing loaded from anywhere. The
//! one script is [`PASSKEY_SCRIPT`], the "Use your passkey" buttons, allowed
//! by its hash in the CSP; the buttons stay hidden without it, and every
//! form works without JavaScript. A centered card that becomes the whole
//! screen on a phone; light and dark following `prefers-color-scheme`;
//! controls at least 48 px tall.
//!
//! Accessibility: a `lang`, one `<main>`, a `<h1>` per page that names the
//! form (`aria-labelledby`), a `<label>` for every input, focus order equal to
//! reading order, a visible focus ring, `autofocus` on the first field that
//! needs the user. A form error is a summary with `role="alert"` and
//! `id="form-error"`, and each field it concerns has `aria-invalid="true"`
//! and `aria-describedby="form-error"`. Every interpolated value is escaped.

/// Escape text for HTML element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// Headers for every page: no framing, nothing external, no script but
/// [`PASSKEY_SCRIPT`] (by its SHA-256, checked by a test), which may call
/// latchkey itself (`connect-src 'self'`) to start a passkey sign-in.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; \
     script-src 'sha256-wJeO+Q2K41bZPnhNhQ3qkNG6ck9ODFVwpslLW+OL+R4='; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

/// The passkey buttons' script: asks the browser for an assertion
/// (`navigator.credentials.get`), puts it in the form's `webauthn` field
/// and submits the form.
pub const PASSKEY_SCRIPT: &str = include_str!("assets/passkey.js");

/// The pages' referrer policy. Our own form POST then carries the real
/// `Origin` (under `no-referrer` it would be `null`) and a `Referer`, while
/// nothing leaving latchkey carries a `Referer`. See `http::authorize::csrf`.
pub const REFERRER_POLICY: &str = "same-origin";

const STYLE: &str = "\
:root{color-scheme:light dark;--bg:#eef0f4;--card:#fff;--text:#111827;--muted:#4b5563;--line:#6b7280;\
--accent:#2452b8;--accent-hover:#1d4396;--on-accent:#fff;--focus:#2f6fdf;\
--error:#9b1c1c;--error-bg:#fdecec;--error-line:#c81e1e}\
@media (prefers-color-scheme:dark){:root{--bg:#0e1116;--card:#1a1e26;--text:#e6e8ec;--muted:#a6adbb;\
--line:#7a8396;--accent:#7aa7ff;--accent-hover:#9dbdff;--on-accent:#0b1020;--focus:#9dbdff;\
--error:#ffc2c2;--error-bg:#3b1c20;--error-line:#ff7b7b}}\
*{box-sizing:border-box}\
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}\
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;padding:2rem 1rem;\
background:var(--bg);color:var(--text);font:1rem/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif}\
.card{width:100%;max-width:26rem;background:var(--card);border-radius:.75rem;padding:2rem 2rem 2.25rem;\
box-shadow:0 1px 2px rgb(0 0 0/.06),0 12px 32px rgb(0 0 0/.10)}\
@media (max-width:30rem){body{align-items:stretch;padding:0}\
.card{max-width:none;border-radius:0;box-shadow:none;padding:1.5rem 1.25rem 2rem}}\
.brand{display:flex;align-items:center;gap:.5rem;margin:0 0 1.75rem;font-weight:700;font-size:1.125rem;letter-spacing:-.01em}\
.logo{width:2rem;height:2rem;flex:none}.logo-bg{fill:var(--accent)}.logo-hole{fill:var(--card)}\
h1{font-size:1.5rem;line-height:1.25;margin:0;overflow-wrap:anywhere}\
.subtitle{margin:.375rem 0 1.5rem;color:var(--muted);overflow-wrap:anywhere}\
.client{color:var(--text);font-weight:600}\
p{margin:0 0 1rem}\
.field{margin-top:1.25rem}\
label{display:block;font-weight:600;margin-bottom:.375rem}\
input{display:block;width:100%;min-height:3rem;padding:.625rem .75rem;font:inherit;color:inherit;\
background:var(--card);border:1px solid var(--line);border-radius:.5rem}\
input[aria-invalid=true]{border:2px solid var(--error-line)}\
input:focus{outline:3px solid var(--focus);outline-offset:1px}\
a:focus-visible,button:focus-visible{outline:3px solid var(--focus);outline-offset:3px}\
.button{display:flex;align-items:center;justify-content:center;width:100%;min-height:3rem;margin-top:1.75rem;\
padding:.625rem 1rem;border:1px solid transparent;border-radius:.5rem;background:var(--accent);color:var(--on-accent);\
font:inherit;font-weight:600;text-align:center;text-decoration:none;cursor:pointer}\
.button:hover{background:var(--accent-hover)}\
.secondary{margin-top:.75rem;background:transparent;color:var(--accent);border-color:var(--line)}\
.secondary:hover{background:transparent;border-color:var(--accent)}\
.alert{display:flex;gap:.625rem;align-items:flex-start;margin:0 0 .5rem;padding:.75rem 1rem;border-radius:.5rem;\
background:var(--error-bg);color:var(--error);border-left:4px solid var(--error-line);overflow-wrap:anywhere}\
.alert::before{content:\"!\";flex:none;display:grid;place-items:center;width:1.375rem;height:1.375rem;margin-top:.0625rem;\
border-radius:50%;background:var(--error-line);color:var(--card);font-weight:700;font-size:.875rem}\
.account{display:flex;align-items:center;gap:.75rem;padding:.75rem;border:1px solid var(--line);border-radius:.5rem}\
.avatar{flex:none;display:grid;place-items:center;width:2.5rem;height:2.5rem;border-radius:50%;\
background:var(--accent);color:var(--on-accent);font-weight:700}\
.account-name{font-weight:600;overflow-wrap:anywhere}\
.muted{color:var(--muted)}";

/// latchkey's mark: a keyhole.
const LOGO: &str = "<svg class=\"logo\" viewBox=\"0 0 32 32\" aria-hidden=\"true\" focusable=\"false\">\
<rect class=\"logo-bg\" width=\"32\" height=\"32\" rx=\"8\"/>\
<path class=\"logo-hole\" d=\"M16 7.5a5 5 0 0 0-2.2 9.5L12.5 25h7l-1.3-8a5 5 0 0 0-2.2-9.5z\"/></svg>";

/// A whole page around `body` (which goes into `<main>`).
pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n\
         <meta name=\"robots\" content=\"noindex, nofollow\">\n\
         <title>{} · latchkey</title>\n<style>{STYLE}</style>\n</head>\n<body>\n\
         <div class=\"card\">\n<header class=\"brand\">{LOGO}<span>latchkey</span></header>\n\
         <main>\n{body}\n</main>\n</div>\n</body>\n</html>\n",
        escape(title)
    )
}

pub fn hidden(name: &str, value: &str) -> String {
    format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">\n", escape(name), escape(value))
}

/// A problem with a submitted form, and the fields it concerns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FormError {
    pub message: String,
    pub username: bool,
    pub password: bool,
}

impl FormError {
    /// A problem with the sign-in as a whole, not with one field.
    pub fn general(message: impl Into<String>) -> Self {
        FormError { message: message.into(), ..Default::default() }
    }
}

/// A message as a sentence for a page: capitalized, ending in a full stop.
pub fn sentence(message: &str) -> String {
    let mut chars = message.trim().chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => return String::new(),
    };
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

/// Attributes that tie an input to the form's error (and focus it).
fn field_state(invalid: bool, focus: bool) -> String {
    let mut attrs = String::new();
    if invalid {
        attrs.push_str(" aria-invalid=\"true\" aria-describedby=\"form-error\"");
    }
    if focus {
        attrs.push_str(" autofocus");
    }
    attrs
}

/// A "use your passkey" button (hidden until the script shows it), the
/// fields it fills, the note it shows when the passkey fails, the script.
/// `source` is `data-begin="…"` (start a ceremony) or `data-options="…"`.
fn passkey_button(label: &str, source: &str) -> String {
    format!(
        "<button type=\"button\" class=\"button secondary\" data-passkey {source} hidden>{label}</button>\n\
         <p id=\"passkey-status\" class=\"muted\" role=\"status\" hidden>The passkey did not work. \
         Try again, or use another way.</p>\n\
         <script>{PASSKEY_SCRIPT}</script>\n",
        label = escape(label),
    )
}

/// The sign-in form. `username` is kept after a failed attempt (or comes
/// from `login_hint`); the password never is. With `passkey_begin` (the
/// URL that starts a usernameless passkey sign-in) it offers a passkey too.
pub fn login_page(
    action: &str,
    client_name: &str,
    hidden_fields: &str,
    username: &str,
    error: Option<&FormError>,
    passkey_begin: Option<&str>,
) -> String {
    let alert = error
        .map(|e| format!("<p class=\"alert\" role=\"alert\" id=\"form-error\">{}</p>\n", escape(&e.message)))
        .unwrap_or_default();
    let (user_invalid, password_invalid) = error.map_or((false, false), |e| (e.username, e.password));
    // Focus the first field the user has to fill in (or fix).
    let focus_user = username.is_empty() || (user_invalid && !password_invalid);
    let body = format!(
        "<h1 id=\"title\">Sign in</h1>\n\
         <p class=\"subtitle\">to continue to <strong class=\"client\">{client}</strong></p>\n\
         <form method=\"post\" action=\"{action}\" aria-labelledby=\"title\">\n{alert}{hidden_fields}\
         <div class=\"field\">\n<label for=\"username\">Username</label>\n\
         <input id=\"username\" name=\"username\" type=\"text\" autocomplete=\"username\" autocapitalize=\"none\" \
         spellcheck=\"false\" required{user_state} value=\"{username}\">\n</div>\n\
         <div class=\"field\">\n<label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" \
         required{password_state}>\n</div>\n\
         <button type=\"submit\" class=\"button\">Sign in</button>\n{passkey}</form>",
        client = escape(client_name),
        action = escape(action),
        username = escape(username),
        user_state = field_state(user_invalid, focus_user),
        password_state = field_state(password_invalid, !focus_user),
        passkey = passkey_begin
            .map(|url| {
                format!(
                    "{}{}{}",
                    hidden("passkey_ceremony", ""),
                    hidden("webauthn", ""),
                    passkey_button("Sign in with a passkey", &format!("data-begin=\"{}\"", escape(url)))
                )
            })
            .unwrap_or_default(),
    );
    page(&format!("Sign in to {client_name}"), &body)
}

/// The second step of a sign-in: a code (authenticator app or recovery
/// code) and, when the user has a passkey, a button for it. `options` is
/// the WebAuthn request options as JSON.
pub fn second_step_page(
    action: &str,
    client_name: &str,
    hidden_fields: &str,
    code: bool,
    options: Option<&str>,
    error: Option<&FormError>,
) -> String {
    let alert = error
        .map(|e| format!("<p class=\"alert\" role=\"alert\" id=\"form-error\">{}</p>\n", escape(&e.message)))
        .unwrap_or_default();
    let code_field = if code {
        format!(
            "<div class=\"field\">\n<label for=\"code\">Code from your authenticator app, or a recovery code</label>\n\
             <input id=\"code\" name=\"code\" type=\"text\" autocomplete=\"one-time-code\" autocapitalize=\"none\" \
             spellcheck=\"false\" maxlength=\"64\"{state}>\n</div>\n\
             <button type=\"submit\" class=\"button\">Verify</button>\n",
            state = field_state(error.is_some(), true),
        )
    } else {
        String::new()
    };
    let passkey = options
        .map(|json| {
            format!(
                "{}{}",
                hidden("webauthn", ""),
                passkey_button("Use your passkey", &format!("data-options=\"{}\"", escape(json)))
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<h1 id=\"title\">Two-step verification</h1>\n\
         <p class=\"subtitle\">to continue to <strong class=\"client\">{client}</strong></p>\n\
         <form method=\"post\" action=\"{action}\" aria-labelledby=\"title\">\n{alert}{hidden_fields}\
         {code_field}{passkey}</form>",
        client = escape(client_name),
        action = escape(action),
    );
    page(&format!("Verify it is you · {client_name}"), &body)
}

/// "Continue as …": a signed-in user confirms before a public client gets a
/// code (RFC 8252 §8.6: its redirect URI does not prove who it is).
pub fn continue_page(
    action: &str,
    client_name: &str,
    username: &str,
    hidden_fields: &str,
    switch_url: &str,
) -> String {
    let initial: String = username.chars().next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
    let body = format!(
        "<h1 id=\"title\">Welcome back</h1>\n\
         <p class=\"subtitle\">Continue to <strong class=\"client\">{client}</strong> with this account?</p>\n\
         <div class=\"account\"><span class=\"avatar\" aria-hidden=\"true\">{initial}</span>\
         <span class=\"account-name\">{user}</span></div>\n\
         <form method=\"post\" action=\"{action}\" aria-labelledby=\"title\">\n{hidden_fields}{continue_field}\
         <button type=\"submit\" class=\"button\" autofocus>Continue as {user}</button>\n</form>\n\
         <a class=\"button secondary\" href=\"{switch}\">Use another account</a>",
        client = escape(client_name),
        user = escape(username),
        initial = escape(&initial),
        action = escape(action),
        continue_field = hidden("continue_session", "1"),
        switch = escape(switch_url),
    );
    page(&format!("Continue to {client_name}"), &body)
}

/// A page that explains a problem; nothing to do but go back.
pub fn error_page(message: &str) -> String {
    page(
        "Sign-in problem",
        &format!(
            "<h1>Something is wrong with this sign-in link</h1>\n\
             <p class=\"subtitle\">Go back to the application and try again.</p>\n\
             <p class=\"alert\" role=\"alert\" id=\"page-error\">{}</p>",
            escape(message)
        ),
    )
}

/// The sign-out confirmation form.
pub fn logout_page(action: &str, hidden_fields: &str) -> String {
    page(
        "Sign out",
        &format!(
            "<h1 id=\"title\">Sign out</h1>\n\
             <p class=\"subtitle\">Do you want to sign out of latchkey in this browser?</p>\n\
             <form method=\"post\" action=\"{}\" aria-labelledby=\"title\">\n{hidden_fields}\
             <button type=\"submit\" class=\"button\" autofocus>Sign out</button>\n</form>",
            escape(action)
        ),
    )
}

pub fn signed_out_page() -> String {
    page("Signed out", "<h1>You are signed out</h1>\n<p class=\"subtitle\">You can close this window.</p>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_become_sentences() {
        assert_eq!(sentence("invalid username or password"), "Invalid username or password.");
        assert_eq!(
            sentence("too many sign-in attempts; retry in 3 seconds"),
            "Too many sign-in attempts; retry in 3 seconds."
        );
        assert_eq!(sentence("done."), "Done.");
        assert_eq!(sentence(""), "");
    }

    #[test]
    fn everything_interpolated_is_escaped() {
        let error = FormError::general("<b>");
        let html = login_page(
            "/a\"b",
            "<script>x</script>",
            &hidden("state", "\"><img>"),
            "o'neil",
            Some(&error),
            None,
        );
        assert!(!html.contains("<script>x"));
        assert!(!html.contains("\"><img>"));
        assert!(!html.contains("<b>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("o&#x27;neil"));
        assert!(html.contains("role=\"alert\""));
        assert!(html.contains("<label for=\"password\">"));
        let html = continue_page("/a", "<i>c</i>", "<u>ser", "", "/s?a=1&b=\"2\"");
        assert!(!html.contains("<i>") && !html.contains("<u>"));
        assert!(html.contains("&lt;u&gt;ser") && html.contains("a=1&amp;b=&quot;2&quot;"));
        assert!(!error_page("<x>").contains("<x>"));
        assert!(!logout_page("\"><x>", "").contains("\"><x>"));
    }

    #[test]
    fn a_wrong_password_is_tied_to_the_fields_and_keeps_the_username() {
        let error =
            FormError { message: "Invalid username or password.".into(), username: true, password: true };
        let html = login_page("/authorize", "Tasks", "", "alice", Some(&error), None);
        assert!(html.contains(
            "<p class=\"alert\" role=\"alert\" id=\"form-error\">Invalid username or password.</p>"
        ));
        assert_eq!(html.matches("aria-invalid=\"true\" aria-describedby=\"form-error\"").count(), 2);
        assert!(html.contains("value=\"alice\""));
        // The username is known: the password field takes the focus, and
        // the password itself is never echoed.
        let password = &html[html.find("id=\"password\"").unwrap()..];
        let password = &password[..password.find('>').unwrap()];
        assert!(password.contains("autofocus") && !password.contains("value="));
        // The error comes before the fields, so it is read first.
        assert!(html.find("form-error").unwrap() < html.find("id=\"username\"").unwrap());
    }

    #[test]
    fn a_fresh_form_focuses_the_username_and_marks_nothing_invalid() {
        let html = login_page("/authorize", "Tasks", "", "", None, None);
        assert!(!html.contains("aria-invalid=\"") && !html.contains("role=\"alert\""));
        let username = &html[html.find("id=\"username\"").unwrap()..];
        assert!(username[..username.find('>').unwrap()].contains("autofocus"));
        assert_eq!(html.matches("autofocus").count(), 1);
        assert!(html.contains("to continue to <strong class=\"client\">Tasks</strong>"));
    }

    #[test]
    fn a_general_error_marks_no_field() {
        let html = login_page("/authorize", "Tasks", "", "alice", Some(&FormError::general("Busy.")), None);
        assert!(html.contains("id=\"form-error\">Busy.</p>"));
        assert!(!html.contains("aria-invalid=\""));
    }

    #[test]
    fn pages_are_self_contained() {
        let pages = [
            login_page("/a", "c", "", "", None, None),
            continue_page("/a", "c", "u", "", "/s"),
            error_page("m"),
            logout_page("/a", ""),
            signed_out_page(),
            login_page("/a", "c", "", "", None, Some("/auth/passkey/login/begin")),
            second_step_page("/a", "c", "", true, Some("{\"publicKey\":{}}"), None),
        ];
        for html in pages {
            // No script but the passkey one, nothing fetched from anywhere,
            // one form at most, one main.
            let scripts = html.matches("<script").count();
            assert!(scripts == 0 || html.matches(&format!("<script>{PASSKEY_SCRIPT}</script>")).count() == 1);
            assert!(!html.contains("http://") && !html.contains("https://"));
            assert!(!html.contains("<link") && !html.contains("<img") && !html.contains("url("));
            assert!(html.matches("<form").count() <= 1);
            assert_eq!(html.matches("<main>").count(), 1);
            assert!(html.contains("<html lang=\"en\">") && html.contains("prefers-color-scheme:dark"));
        }
    }

    #[test]
    fn the_policy_allows_the_passkey_script_by_its_hash_and_nothing_else() {
        use base64::Engine;
        let digest = crate::crypto::sha256(PASSKEY_SCRIPT.as_bytes());
        let hash = base64::engine::general_purpose::STANDARD.encode(digest);
        assert!(CONTENT_SECURITY_POLICY.contains(&format!("script-src 'sha256-{hash}';")), "{hash}");
        assert!(
            !CONTENT_SECURITY_POLICY.contains("unsafe-eval")
                && !CONTENT_SECURITY_POLICY.contains("script-src 'unsafe-inline'")
        );
    }

    #[test]
    fn passkey_buttons_are_hidden_until_the_script_shows_them() {
        let html =
            second_step_page("/a", "c", "", false, Some("{\"publicKey\":{\"challenge\":\"x\"}}"), None);
        assert!(html.contains("data-passkey data-options=\"{&quot;publicKey&quot;:{&quot;challenge&quot;:&quot;x&quot;}}\" hidden>Use your passkey</button>"));
        assert!(!html.contains("name=\"code\""));
        let html = second_step_page("/a", "c", "", true, None, Some(&FormError::general("Wrong.")));
        assert!(html.contains("name=\"code\"") && !html.contains("<script"));
        assert!(html.contains("autocomplete=\"one-time-code\""));
    }
}
