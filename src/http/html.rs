//! The few server-rendered pages: sign-in, sign-out, errors.
//!
//! Plain HTML, no JavaScript, labels tied to inputs, one `<main>`, errors
//! announced with `role="alert"`. Every interpolated value is escaped.

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

/// Headers for every page: no framing, no scripts, nothing external.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1d2330;margin:0}\
main{max-width:24rem;margin:8vh auto;background:#fff;padding:2rem;border-radius:.5rem;box-shadow:0 1px 3px #0002}\
h1{font-size:1.5rem;margin:0 0 .5rem}label{display:block;margin-top:1rem;font-weight:600}\
input{width:100%;box-sizing:border-box;padding:.6rem;margin-top:.3rem;border:1px solid #8a93a6;border-radius:.3rem;font-size:1rem}\
input:focus,button:focus{outline:3px solid #2f6fdf;outline-offset:1px}\
button{margin-top:1.5rem;width:100%;padding:.7rem;border:0;border-radius:.3rem;background:#2452b8;color:#fff;font-size:1rem;cursor:pointer}\
.error{background:#fde8e8;color:#8a1111;padding:.6rem;border-radius:.3rem}";

pub fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n",
        escape(title)
    )
}

pub fn hidden(name: &str, value: &str) -> String {
    format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">\n", escape(name), escape(value))
}

/// The sign-in form.
pub fn login_page(
    action: &str,
    client_name: &str,
    hidden_fields: &str,
    username: &str,
    error: Option<&str>,
) -> String {
    let alert =
        error.map(|e| format!("<p role=\"alert\" class=\"error\">{}</p>\n", escape(e))).unwrap_or_default();
    let body = format!(
        "<h1>Sign in</h1>\n<p>to continue to <strong>{client}</strong></p>\n{alert}\
         <form method=\"post\" action=\"{action}\">\n{hidden_fields}\
         <label for=\"username\">Username</label>\n\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus value=\"{username}\">\n\
         <label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\n\
         <button type=\"submit\">Sign in</button>\n</form>",
        client = escape(client_name),
        action = escape(action),
        username = escape(username),
    );
    page(&format!("Sign in to {client_name}"), &body)
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
    let body = format!(
        "<h1>Continue?</h1>\n<p><strong>{client}</strong> wants to sign you in as <strong>{user}</strong>.</p>\n\
         <form method=\"post\" action=\"{action}\">\n{hidden_fields}{continue_field}\
         <button type=\"submit\">Continue as {user}</button>\n</form>\n\
         <p><a href=\"{switch}\">Use another account</a></p>",
        client = escape(client_name),
        user = escape(username),
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
            "<h1>Something is wrong with this sign-in link</h1>\n<p role=\"alert\" class=\"error\">{}</p>\n<p>Go back to the application and try again.</p>",
            escape(message)
        ),
    )
}

/// The sign-out confirmation form.
pub fn logout_page(action: &str, hidden_fields: &str) -> String {
    page(
        "Sign out",
        &format!(
            "<h1>Sign out</h1>\n<p>Do you want to sign out?</p>\n<form method=\"post\" action=\"{}\">\n{hidden_fields}<button type=\"submit\">Sign out</button>\n</form>",
            escape(action)
        ),
    )
}

pub fn signed_out_page() -> String {
    page("Signed out", "<h1>You are signed out</h1>\n<p>You can close this window.</p>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_interpolated_is_escaped() {
        let html =
            login_page("/a\"b", "<script>x</script>", &hidden("state", "\"><img>"), "o'neil", Some("<b>"));
        assert!(!html.contains("<script>x"));
        assert!(!html.contains("\"><img>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("o&#x27;neil"));
        assert!(html.contains("role=\"alert\""));
        assert!(html.contains("<label for=\"password\">"));
    }
}
