//! Ceilings for `scripts/bench`, in a process of their own (built only with
//! `--features bench`):
//!
//! - `serve ADDR FILE`: a bare poem server answering `GET /` with the bytes
//!   of FILE (the JWKS latchkey served), as `application/json`: the most
//!   any poem handler can do for the same response on this machine;
//! - `crypto SECONDS`: raw ES256 signatures and verifications per second on
//!   one core, with josekit as latchkey uses it: the most a token endpoint or
//!   introspection can do per core.

use std::time::{Duration, Instant};

use josekit::jws::{ES256, JwsHeader};
use josekit::jwt::{self, JwtPayload};
use poem::web::Data;
use poem::{EndpointExt, Route, Server, get, handler, listener::TcpListener};

#[handler]
fn same_bytes(Data(body): Data<&bytes::Bytes>) -> poem::Response {
    poem::Response::builder().content_type("application/json").body(body.clone())
}

fn usage() -> std::process::ExitCode {
    eprintln!("usage: latchkey-bench-ceiling serve ADDR FILE | crypto SECONDS");
    std::process::ExitCode::from(2)
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["serve", addr, file] => match serve(addr, file) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("latchkey-bench-ceiling: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        ["crypto", seconds] => match seconds.parse::<u64>() {
            Ok(seconds) => match crypto(Duration::from_secs(seconds)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("latchkey-bench-ceiling: {e}");
                    std::process::ExitCode::FAILURE
                }
            },
            Err(_) => usage(),
        },
        _ => usage(),
    }
}

fn serve(addr: &str, file: &str) -> anyhow::Result<()> {
    let body = bytes::Bytes::from(std::fs::read(file)?);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let app = Route::new().at("/", get(same_bytes)).data(body);
        Server::new(TcpListener::bind(addr)).run(app).await
    })?;
    Ok(())
}

/// Count operations done on this thread within `window`.
fn rate(window: Duration, mut op: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < window {
        op()?;
        count += 1;
    }
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

fn crypto(window: Duration) -> anyhow::Result<()> {
    let pair = ES256.generate_key_pair()?;
    let signer = ES256.signer_from_der(pair.to_der_private_key())?;
    let verifier = ES256.verifier_from_jwk(&pair.to_jwk_public_key())?;
    let mut header = JwsHeader::new();
    header.set_token_type("at+jwt");
    header.set_key_id("bench");
    let mut payload = JwtPayload::new();
    payload.set_subject("0190f5c1-7d7a-7b3e-9f7e-2a1d3c4b5a69");
    payload.set_issuer("http://127.0.0.1:8080");
    payload.set_audience(vec!["latchkey"]);
    let token = jwt::encode_with_signer(&payload, &header, &signer)?;
    let signs = rate(window, || {
        jwt::encode_with_signer(&payload, &header, &signer)?;
        Ok(())
    })?;
    let verifies = rate(window, || {
        jwt::decode_with_verifier(&token, &verifier)?;
        Ok(())
    })?;
    println!("es256_sign_per_core {signs:.0}");
    println!("es256_verify_per_core {verifies:.0}");
    Ok(())
}
