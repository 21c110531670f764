//! Real TLS handshakes on loopback: the mTLS accept loop, the identity check, rotation and
//! the timeouts, with in-process servers and clients (`--features serve`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::routing::get;
use axum::{Extension, Router};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use sluice_common::tls::{
    self, ca_init, client_config, https_client, issue, issue_at, serve_tls_with, spawn_reloader,
    CertifiedKeyPem, ClientAuth, IdentityError, PeerIdentity, Role, ServeOptions, ServerTls,
    TlsFiles, TlsMaterial,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

/// How long anything that should happen promptly may take on a loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(10);

struct Pki {
    ca: CertifiedKeyPem,
    server: CertifiedKeyPem,
}

impl Pki {
    fn new() -> Self {
        let ca = ca_init().unwrap();
        let server = leaf(&ca, Role::Coordinator, "coord-1");
        Self { ca, server }
    }

    fn material(&self) -> TlsMaterial {
        TlsMaterial::from_pem(
            self.ca.cert_pem.clone(),
            self.server.cert_pem.clone(),
            self.server.key_pem.clone(),
        )
        .unwrap()
    }
}

fn leaf(ca: &CertifiedKeyPem, role: Role, name: &str) -> CertifiedKeyPem {
    let sans = ["127.0.0.1".to_string(), "localhost".to_string()];
    issue(&ca.cert_pem, &ca.key_pem, role, name, &sans, 30).unwrap()
}

struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

fn router() -> Router {
    Router::new().route(
        "/whoami",
        get(|peer: Option<Extension<PeerIdentity>>| async move {
            match peer {
                Some(Extension(p)) => format!("{}:{}", p.role, p.name),
                None => "anonymous".to_string(),
            }
        }),
    )
}

async fn start(tls: ServerTls, options: ServeOptions) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve_tls_with(
        listener,
        router(),
        tls,
        options,
        shutdown.clone(),
    ));
    Server {
        addr,
        shutdown,
        task,
    }
}

async fn start_fixed(pki: &Pki, auth: ClientAuth) -> Server {
    start(
        ServerTls::fixed(&pki.material(), auth).unwrap(),
        ServeOptions::default(),
    )
    .await
}

/// GET /whoami through reqwest (h2 by ALPN), presenting `identity` if given.
async fn whoami(
    ca_pem: &str,
    identity: Option<&CertifiedKeyPem>,
    addr: SocketAddr,
) -> Result<String, reqwest::Error> {
    let client = https_client(
        ca_pem,
        identity.map(|i| (i.cert_pem.as_str(), i.key_pem.as_str())),
        &[],
    )
    .unwrap()
    .timeout(PATIENCE)
    .build()?;
    client
        .get(format!("https://{addr}/whoami"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await
}

/// A raw TLS connection speaking HTTP/1.1, for looking at certificates and timeouts.
async fn connect_raw(
    ca_pem: &str,
    identity: Option<&CertifiedKeyPem>,
    addr: SocketAddr,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut config = client_config(
        ca_pem,
        identity.map(|i| (i.cert_pem.as_str(), i.key_pem.as_str())),
        &[],
    )
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
}

async fn raw_get(stream: &mut tokio_rustls::client::TlsStream<TcpStream>) -> String {
    stream
        .write_all(b"GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(PATIENCE, stream.read(&mut buf))
        .await
        .expect("a response in time")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

fn write_files(dir: &Path, ca: &CertifiedKeyPem, node: &CertifiedKeyPem) -> TlsFiles {
    use std::os::unix::fs::PermissionsExt;
    let files = TlsFiles::in_dir(dir, "node");
    std::fs::write(&files.ca, &ca.cert_pem).unwrap();
    std::fs::write(&files.cert, &node.cert_pem).unwrap();
    std::fs::write(&files.key, &node.key_pem).unwrap();
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    files
}

/// Polls `check` until it holds or [`PATIENCE`] runs out.
async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn handler_sees_the_peer_identity() {
    let pki = Pki::new();
    let server = start_fixed(&pki, ClientAuth::Required).await;
    let agent = leaf(&pki.ca, Role::Agent, "web-1");
    let client = leaf(&pki.ca, Role::Client, "ci");
    assert_eq!(
        whoami(&pki.ca.cert_pem, Some(&agent), server.addr)
            .await
            .unwrap(),
        "agent:web-1"
    );
    assert_eq!(
        whoami(&pki.ca.cert_pem, Some(&client), server.addr)
            .await
            .unwrap(),
        "client:ci"
    );
    // HTTP/1.1 too.
    let mut raw = connect_raw(&pki.ca.cert_pem, Some(&agent), server.addr)
        .await
        .unwrap();
    let response = raw_get(&mut raw).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("agent:web-1"), "{response}");
}

#[tokio::test]
async fn client_certificate_from_another_ca_is_refused() {
    let pki = Pki::new();
    let other_ca = ca_init().unwrap();
    let stranger = leaf(&other_ca, Role::Coordinator, "coord-9");
    for auth in [ClientAuth::Required, ClientAuth::Optional] {
        let server = start_fixed(&pki, auth).await;
        let result = whoami(&pki.ca.cert_pem, Some(&stranger), server.addr).await;
        assert!(result.is_err(), "{auth:?}: {result:?}");
    }
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let pki = Pki::new();
    let server = start_fixed(&pki, ClientAuth::Required).await;
    let ten_days_ago = SystemTime::now() - Duration::from_secs(10 * 86400);
    let expired = issue_at(
        &pki.ca.cert_pem,
        &pki.ca.key_pem,
        Role::Agent,
        "web-1",
        &[],
        ten_days_ago,
        1,
    )
    .unwrap();
    let result = whoami(&pki.ca.cert_pem, Some(&expired), server.addr).await;
    assert!(result.is_err(), "{result:?}");
    // The same name with a valid certificate gets in: it was the date.
    let fresh = leaf(&pki.ca, Role::Agent, "web-1");
    assert_eq!(
        whoami(&pki.ca.cert_pem, Some(&fresh), server.addr)
            .await
            .unwrap(),
        "agent:web-1"
    );
}

#[tokio::test]
async fn anonymous_clients_are_refused_only_when_certificates_are_required() {
    let pki = Pki::new();
    let required = start_fixed(&pki, ClientAuth::Required).await;
    let result = whoami(&pki.ca.cert_pem, None, required.addr).await;
    assert!(result.is_err(), "{result:?}");

    let optional = start_fixed(&pki, ClientAuth::Optional).await;
    assert_eq!(
        whoami(&pki.ca.cert_pem, None, optional.addr).await.unwrap(),
        "anonymous"
    );
    let agent = leaf(&pki.ca, Role::Agent, "web-2");
    assert_eq!(
        whoami(&pki.ca.cert_pem, Some(&agent), optional.addr)
            .await
            .unwrap(),
        "agent:web-2"
    );
}

#[tokio::test]
async fn clients_trust_only_the_project_ca_and_can_require_a_server_role() {
    let pki = Pki::new();
    let server = start_fixed(&pki, ClientAuth::Optional).await;
    let other_ca = ca_init().unwrap();
    assert!(whoami(&other_ca.cert_pem, None, server.addr).await.is_err());

    // The server is a coordinator: a client that wants an agent refuses it.
    let wants_agent = https_client(&pki.ca.cert_pem, None, &[Role::Agent])
        .unwrap()
        .build()
        .unwrap();
    let url = format!("https://{}/whoami", server.addr);
    assert!(wants_agent.get(&url).send().await.is_err());
    let wants_coordinator = https_client(&pki.ca.cert_pem, None, &[Role::Coordinator])
        .unwrap()
        .build()
        .unwrap();
    let body = wants_coordinator
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "anonymous");
}

/// A certificate signed by the project CA but without the identity URI (or with two).
fn cert_with_uris(ca: &CertifiedKeyPem, uris: &[&str]) -> CertifiedKeyPem {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::from_pem(&ca.key_pem).unwrap();
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, &ca_key).unwrap();
    let mut params = CertificateParams::new(vec!["web-1".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "agent:web-1");
    for uri in uris {
        params
            .subject_alt_names
            .push(SanType::URI((*uri).try_into().unwrap()));
    }
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    CertifiedKeyPem {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

#[tokio::test]
async fn certificate_without_the_sluice_uri_is_refused() {
    let pki = Pki::new();
    let bare = cert_with_uris(&pki.ca, &[]);
    let other_uri = cert_with_uris(&pki.ca, &["https://example.com/agent/web-1"]);
    let two = cert_with_uris(
        &pki.ca,
        &["urn:sluice:agent:web-1", "urn:sluice:coordinator:web-1"],
    );
    assert_eq!(
        PeerIdentity::from_der(&der(&bare.cert_pem)),
        Err(IdentityError::Missing)
    );
    assert_eq!(
        PeerIdentity::from_der(&der(&other_uri.cert_pem)),
        Err(IdentityError::Missing)
    );
    assert_eq!(
        PeerIdentity::from_der(&der(&two.cert_pem)),
        Err(IdentityError::Several(2))
    );

    // Over a real handshake: the chain verifies, the identity does not, the connection closes.
    for auth in [ClientAuth::Required, ClientAuth::Optional] {
        let server = start_fixed(&pki, auth).await;
        for cert in [&bare, &two] {
            let result = whoami(&pki.ca.cert_pem, Some(cert), server.addr).await;
            assert!(result.is_err(), "{auth:?}: {result:?}");
        }
    }
    // Nor can such a certificate serve as a node's own.
    assert!(matches!(
        TlsMaterial::from_pem(pki.ca.cert_pem.clone(), bare.cert_pem, bare.key_pem),
        Err(tls::TlsError::Identity(IdentityError::Missing))
    ));
}

#[tokio::test]
async fn rotated_server_certificate_is_picked_up_without_restart() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let files = write_files(dir.path(), &pki.ca, &pki.server);
    let tls = ServerTls::from_files(files.clone(), ClientAuth::Required).unwrap();
    let first_expiry = tls.not_after();
    let server = start(tls.clone(), ServeOptions::default()).await;
    let agent = leaf(&pki.ca, Role::Agent, "web-1");

    let mut before = connect_raw(&pki.ca.cert_pem, Some(&agent), server.addr)
        .await
        .unwrap();
    assert_eq!(
        before.get_ref().1.peer_certificates().unwrap()[0],
        der(&pki.server.cert_pem)
    );

    // Rotate: a new certificate with a longer life, written over the old files.
    let rotated = issue(
        &pki.ca.cert_pem,
        &pki.ca.key_pem,
        Role::Coordinator,
        "coord-1",
        &["127.0.0.1".into()],
        90,
    )
    .unwrap();
    write_files(dir.path(), &pki.ca, &rotated);
    assert!(tls.reload_if_changed().unwrap());
    assert!(!tls.reload_if_changed().unwrap(), "nothing changed since");
    assert!(tls.not_after() > first_expiry + Duration::from_secs(50 * 86400));

    let mut after = connect_raw(&pki.ca.cert_pem, Some(&agent), server.addr)
        .await
        .unwrap();
    assert_eq!(
        after.get_ref().1.peer_certificates().unwrap()[0],
        der(&rotated.cert_pem)
    );
    assert!(raw_get(&mut after).await.ends_with("agent:web-1"));
    // The connection made before the rotation still works.
    assert!(raw_get(&mut before).await.ends_with("agent:web-1"));

    // A broken rotation (key of another certificate) is refused and the current one stays.
    std::fs::write(&files.key, &pki.server.key_pem).unwrap();
    assert!(matches!(tls.reload(), Err(tls::TlsError::KeyMismatch(_))));
    let mut still = connect_raw(&pki.ca.cert_pem, Some(&agent), server.addr)
        .await
        .unwrap();
    assert_eq!(
        still.get_ref().1.peer_certificates().unwrap()[0],
        der(&rotated.cert_pem)
    );
    assert!(raw_get(&mut still).await.ends_with("agent:web-1"));
    assert!(!server.task.is_finished());
}

#[tokio::test]
async fn the_reloader_follows_file_changes() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let files = write_files(dir.path(), &pki.ca, &pki.server);
    let tls = ServerTls::from_files(files, ClientAuth::Required).unwrap();
    let server = start(tls.clone(), ServeOptions::default()).await;
    let reloader = spawn_reloader(tls, Duration::from_millis(100), server.shutdown.clone());
    let agent = leaf(&pki.ca, Role::Agent, "web-1");

    let rotated = leaf(&pki.ca, Role::Coordinator, "coord-1");
    write_files(dir.path(), &pki.ca, &rotated);
    let want = der(&rotated.cert_pem);
    let seen = eventually(|| {
        let (ca, agent, want) = (&pki.ca.cert_pem, &agent, &want);
        async move {
            match connect_raw(ca, Some(agent), server.addr).await {
                Ok(s) => s.get_ref().1.peer_certificates().unwrap()[0] == *want,
                Err(_) => false,
            }
        }
    })
    .await;
    assert!(seen, "new connections never saw the rotated certificate");
    server.shutdown.cancel();
    tokio::time::timeout(PATIENCE, reloader)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn key_files_readable_by_others_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let files = write_files(dir.path(), &pki.ca, &pki.server);
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        ServerTls::from_files(files, ClientAuth::Required),
        Err(tls::TlsError::KeyFileMode { .. })
    ));
}

/// Reads until the server closes the connection; true if it did within [`PATIENCE`].
async fn closed_by_server<S: tokio::io::AsyncRead + Unpin>(stream: &mut S) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or similar before closing is fine; keep reading to the close.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn slowloris_connections_are_closed() {
    let pki = Pki::new();
    let options = ServeOptions {
        handshake_timeout: Duration::from_millis(500),
        header_read_timeout: Duration::from_millis(500),
        ..ServeOptions::default()
    };
    let server = start(
        ServerTls::fixed(&pki.material(), ClientAuth::Required).unwrap(),
        options,
    )
    .await;
    let agent = leaf(&pki.ca, Role::Agent, "web-1");

    // Headers that never finish.
    let mut slow = connect_raw(&pki.ca.cert_pem, Some(&agent), server.addr)
        .await
        .unwrap();
    slow.write_all(b"GET /whoami HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(closed_by_server(&mut slow).await, "slow headers kept open");
    assert!(started.elapsed() >= Duration::from_millis(400));

    // A TCP connection that never starts the handshake.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_by_server(&mut silent).await, "silent TCP kept open");

    // The server is still serving.
    assert_eq!(
        whoami(&pki.ca.cert_pem, Some(&agent), server.addr)
            .await
            .unwrap(),
        "agent:web-1"
    );
}

#[tokio::test]
async fn shutdown_stops_accepting_and_drains() {
    let pki = Pki::new();
    let server = start_fixed(&pki, ClientAuth::Required).await;
    let agent = leaf(&pki.ca, Role::Agent, "web-1");
    // An idle keep-alive connection must not hold the drain up.
    let mut idle = connect_raw(&pki.ca.cert_pem, Some(&agent), server.addr)
        .await
        .unwrap();
    assert!(raw_get(&mut idle).await.ends_with("agent:web-1"));

    server.shutdown.cancel();
    let result = tokio::time::timeout(PATIENCE, server.task)
        .await
        .expect("the server drains within the grace period")
        .unwrap();
    assert!(result.is_ok());
    assert!(closed_by_server(&mut idle).await);
    assert!(TcpStream::connect(server.addr).await.is_err());
}
