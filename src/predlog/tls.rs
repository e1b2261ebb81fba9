//! TLS to PostgreSQL, with libpq's `sslmode` and `sslrootcert` read from `--database-url`
//! (tokio-postgres knows only `disable`, `prefer` and `require`, and verifies nothing itself).
//!
//! | sslmode | encrypted | certificate checked |
//! | --- | --- | --- |
//! | `disable` | never | - |
//! | `prefer` (default) | when the server offers TLS | no |
//! | `require` | always | no (as `verify-ca` when `sslrootcert` is given, as in libpq) |
//! | `verify-ca` | always | chain to a trusted root |
//! | `verify-full` | always | chain, and the host name or IP address |
//!
//! Trusted roots: the PEM file in `sslrootcert`, else Mozilla's roots and the system's store.

use super::dburl::{take_from_key_values, take_from_uri};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use rustls::{Error, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_postgres::config::SslMode as WireMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values (`allow` is read as `prefer`: both accept plaintext).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, String> {
        Ok(match value {
            "disable" => Self::Disable,
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            // The value is not echoed: errors name keys only (see dburl).
            _ => {
                return Err(
                    "unknown `sslmode` (disable, prefer, require, verify-ca, verify-full)".into(),
                )
            }
        })
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// `--database-url` taken apart: the connection settings tokio-postgres reads, and the TLS
/// settings it does not.
pub(super) struct DatabaseUrl {
    pub pg: tokio_postgres::Config,
    pub ssl_mode: SslMode,
    pub root_cert: Option<PathBuf>,
}

impl DatabaseUrl {
    /// Parses a `postgres://` URL or a `key=value` string.
    pub(super) fn parse(url: &str) -> Result<Self, String> {
        let (rest, settings) = if url.starts_with("postgres://") || url.starts_with("postgresql://")
        {
            take_from_uri(url)?
        } else {
            take_from_key_values(url)?
        };
        let ssl_mode = match &settings.ssl_mode {
            Some(mode) => SslMode::parse(mode)?,
            None => SslMode::Prefer,
        };
        let mut pg: tokio_postgres::Config = rest
            .parse()
            .map_err(|e| format!("not a PostgreSQL URL or key=value string: {e}"))?;
        pg.ssl_mode(match ssl_mode {
            SslMode::Disable => WireMode::Disable,
            SslMode::Prefer => WireMode::Prefer,
            _ => WireMode::Require,
        });
        Ok(Self {
            pg,
            ssl_mode,
            root_cert: settings.root_cert.map(PathBuf::from),
        })
    }

    /// The connector for [`Self::ssl_mode`]; reads the root certificates now, so that a
    /// missing or unreadable `sslrootcert` stops start-up instead of every connection.
    pub(super) fn connector(&self) -> Result<MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let check = match (self.ssl_mode, &self.root_cert) {
            (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => Check::Nothing,
            (SslMode::Require | SslMode::VerifyCa, _) => Check::Chain,
            (SslMode::VerifyFull, _) => Check::ChainAndName,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match check {
            Check::Nothing => Arc::new(Unverified(provider.clone())),
            Check::Chain | Check::ChainAndName => {
                let roots = Arc::new(self.roots()?);
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| format!("cannot use the root certificates: {e}"))?;
                if check == Check::Chain {
                    Arc::new(AnyName(webpki))
                } else {
                    webpki
                }
            }
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        match &self.root_cert {
            Some(path) => {
                // A file's path, shown as --database-password-file's is: not a secret, and
                // what an operator needs to fix the mount.
                let shown = path.display();
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("sslrootcert {shown}: {e}"))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!("sslrootcert {shown} holds no usable certificate"));
                }
            }
            None => {
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                // Unreadable system stores are not fatal: Mozilla's roots remain.
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
        }
        Ok(roots)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

/// `prefer`/`require` without roots, as libpq: encryption against passive listeners only. The
/// handshake signatures are still checked, so the key exchange is with the certificate's key.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the full WebPKI check, except that a certificate for another name passes.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_settings_are_taken_out_and_the_rest_kept() {
        let url = DatabaseUrl::parse(
            "postgres://app@db.internal:5433/preds?sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20x.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(url.ssl_mode, SslMode::VerifyFull);
        assert_eq!(url.root_cert, Some(PathBuf::from("/etc/ca x.pem")));
        assert_eq!(url.pg.get_ssl_mode(), WireMode::Require);
        assert_eq!(url.pg.get_dbname(), Some("preds"));
        assert_eq!(url.pg.get_application_name(), Some("x"));
    }

    #[test]
    fn key_value_settings_are_taken_out_with_quotes() {
        let url = DatabaseUrl::parse(
            "host=db user=app sslmode = 'verify-ca' sslrootcert='/ca dir/it\\'s.pem' dbname=preds",
        )
        .unwrap();
        assert_eq!(url.ssl_mode, SslMode::VerifyCa);
        assert_eq!(url.root_cert, Some(PathBuf::from("/ca dir/it's.pem")));
        assert_eq!(url.pg.get_dbname(), Some("preds"));
        assert_eq!(url.pg.get_user(), Some("app"));
    }

    #[test]
    fn default_is_prefer_and_bad_values_are_refused() {
        let url = DatabaseUrl::parse("postgres://app@db/preds").unwrap();
        assert_eq!(url.ssl_mode, SslMode::Prefer);
        assert_eq!(url.pg.get_ssl_mode(), WireMode::Prefer);
        let err = DatabaseUrl::parse("postgres://db/x?sslmode=verify")
            .err()
            .unwrap();
        assert!(err.contains("unknown `sslmode`"), "{err}");
        assert!(!err.contains("verify`"), "{err}");
        assert!(DatabaseUrl::parse("host=db sslrootcert='/x").is_err());
        assert!(DatabaseUrl::parse("postgres://db/x?sslrootcert=%zz").is_err());
    }

    #[test]
    fn a_missing_root_certificate_file_is_an_error_at_once() {
        let url =
            DatabaseUrl::parse("postgres://db/x?sslmode=verify-full&sslrootcert=/nonexistent.pem")
                .unwrap();
        let err = url.connector().err().unwrap();
        assert!(err.contains("/nonexistent.pem"), "{err}");
        // Without verification no roots are read.
        let url = DatabaseUrl::parse("postgres://db/x?sslmode=require").unwrap();
        assert!(url.connector().is_ok());
    }
}
