//! How error answers become [`ClientError`]s, against a canned HTTP/1.1 server on loopback.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// A server that answers one request with `status`, `content_type` and `body`; its base URL.
async fn answering(status: &str, content_type: &str, body: &str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        s.write_all(answer.as_bytes()).await.unwrap();
    });
    format!("http://{addr}")
}

fn client(base: String) -> Client {
    Client::new(reqwest::Client::builder().build().unwrap(), base)
}

#[tokio::test]
async fn a_problem_body_is_the_servers_problem() {
    let body = r#"{"type":"urn:sluice:problem:lock_held","title":"Lock held","status":409,"detail":"held by ci","code":"lock_held","holder":"ci"}"#;
    let base = answering("409 Conflict", "application/problem+json", body).await;
    let e = client(base).locks().await.unwrap_err();
    let ClientError::Problem {
        status,
        problem,
        from_status,
    } = &e
    else {
        panic!("{e:?}");
    };
    assert_eq!(status.as_u16(), 409);
    assert!(!from_status);
    assert_eq!(problem.code, ErrorCode::LockHeld);
    assert_eq!(problem.detail, "held by ci");
    assert_eq!(problem.extensions["holder"], "ci");
    assert_eq!(e.code(), Some(ErrorCode::LockHeld));
    assert_eq!(e.status(), Some(StatusCode::CONFLICT));
}

#[tokio::test]
async fn another_body_is_a_problem_made_from_the_status_and_says_so() {
    let base = answering("502 Bad Gateway", "text/html", "<h1>proxy</h1>").await;
    let e = client(base).locks().await.unwrap_err();
    let ClientError::Problem {
        status,
        problem,
        from_status,
    } = &e
    else {
        panic!("{e:?}");
    };
    assert_eq!(status.as_u16(), 502);
    assert!(from_status);
    assert_eq!((problem.code, problem.status), (ErrorCode::Internal, 502));
}

#[tokio::test]
async fn a_success_that_does_not_fit_the_type_is_a_decode_error() {
    let base = answering("200 OK", "application/json", r#"{"locks":"none"}"#).await;
    let e = client(base).locks().await.unwrap_err();
    assert!(matches!(e, ClientError::Decode { .. }), "{e:?}");
    assert_eq!(e.problem().map(|p| p.code), None);
}
