//! A private CA and the certificates it signs, for trying TLS on one
//! machine (`spoor tls dev-certs`) and for the tests. Keys are written
//! unencrypted and the CA signs whatever it is asked: production
//! certificates come from the operator's own PKI.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// What a certificate may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A node: served on its listeners and presented to coordinators that
    /// demand client certificates.
    Node,
    /// A client only (the CLI under mutual TLS).
    Client,
}

/// A certificate and its key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

/// A self-signed CA that issues certificates valid from yesterday for
/// `valid_days`.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    valid_days: i64,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

fn validity(params: &mut CertificateParams, valid_days: i64) {
    let now = rcgen::date_time_ymd(1970, 1, 1)
        + std::time::Duration::from_secs(
            u64::try_from(chrono::Utc::now().timestamp()).unwrap_or_default(),
        );
    params.not_before = now - std::time::Duration::from_secs(86_400);
    params.not_after =
        now + std::time::Duration::from_secs(86_400 * u64::try_from(valid_days).unwrap_or(1));
}

fn named(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Spoor development");
    name.push(DnType::CommonName, common_name);
    name
}

impl DevCa {
    /// A new CA named `common_name`.
    pub fn new(common_name: &str, valid_days: i64) -> Result<DevCa, String> {
        let key = KeyPair::generate().map_err(|e| format!("generating the CA key: {e}"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = named(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, valid_days);
        let cert = params
            .self_signed(&key)
            .map_err(|e| format!("signing the CA certificate: {e}"))?;
        Ok(DevCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
            valid_days,
        })
    }

    /// The CA's certificate: what clients and servers trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate for `common_name`, valid for `hosts` (DNS names or IP
    /// addresses).
    pub fn issue(
        &self,
        common_name: &str,
        hosts: &[String],
        usage: Usage,
    ) -> Result<Issued, String> {
        let key = KeyPair::generate().map_err(|e| format!("generating a key: {e}"))?;
        let mut params = CertificateParams::new(hosts.to_vec())
            .map_err(|e| format!("host names {hosts:?}: {e}"))?;
        params.distinguished_name = named(common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match usage {
            Usage::Node => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        validity(&mut params, self.valid_days);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| format!("signing the certificate of {common_name}: {e}"))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}
