//! TLS clients for tests: rustls trusting the development CA (or, to look at which
//! certificate a name gets, trusting anything), and hyper over them.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client that trusts the CA certificate at `ca` and offers ALPN `alpn`.
pub fn trusting(ca: &Path, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A client that accepts any certificate (to see which one a name is given).
pub fn trusting_anything() -> Arc<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    Arc::new(config)
}

pub async fn connect(
    addr: SocketAddr,
    name: &str,
    config: Arc<ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    TlsConnector::from(config).connect(name, tcp).await
}

/// The DER of the certificate the server presented.
pub fn served_certificate(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Whether the certificate served for `name` signs itself and covers `name`: a client
/// that trusts exactly that certificate completes a handshake for `name` with it.
pub async fn served_self_signed_for(addr: SocketAddr, name: &str) -> bool {
    let served = CertificateDer::from(served_for(addr, name).await);
    let mut roots = RootCertStore::empty();
    if roots.add(served).is_err() {
        return false;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let config = builder.with_root_certificates(roots).with_no_client_auth();
    connect(addr, name, Arc::new(config)).await.is_ok()
}

/// The DER of the certificate served for `name`, whatever it is.
pub async fn served_for(addr: SocketAddr, name: &str) -> Vec<u8> {
    served_certificate(&connect(addr, name, trusting_anything()).await.unwrap())
}

/// The DER of the first certificate in a PEM file.
pub fn certificate_file(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path).unwrap().to_vec()
}

/// An HTTP/1.1 sender over a TLS stream.
pub async fn http1_over(stream: TlsStream<TcpStream>) -> http1::SendRequest<Empty<Bytes>> {
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    sender
}

/// An HTTP/2 sender over any stream (TLS with ALPN h2, or plain TCP with prior knowledge).
pub async fn http2_over<S>(stream: S) -> http2::SendRequest<Empty<Bytes>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// An HTTP/2 sender with prior knowledge (h2c) on `edge`'s plain-HTTP port.
pub async fn h2c(edge: &super::TestEdge) -> http2::SendRequest<Empty<Bytes>> {
    http2_over(TcpStream::connect(edge.running.http_addr).await.unwrap()).await
}

/// A GET for `path` on `host`.
pub fn get(host: &str, path: &str) -> http::Request<Empty<Bytes>> {
    http::Request::get(format!("https://{host}{path}"))
        .header("host", host)
        .body(Empty::new())
        .unwrap()
}

/// Sends and reads the whole answer.
pub async fn send1(
    sender: &mut http1::SendRequest<Empty<Bytes>>,
    req: http::Request<Empty<Bytes>>,
) -> (http::StatusCode, String) {
    let res = sender.send_request(req).await.unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
