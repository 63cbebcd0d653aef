//! A private certificate authority for a small deployment: `exile-master certs init` makes
//! one and a server certificate for the master's names, and the master signs spawners'
//! client certificates with it at enrollment (spawner mTLS).
//!
//! Built on rcgen (pure Rust over ring, the same crypto the TLS stack uses), so nobody has to
//! learn openssl to run Exile over TLS.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};

/// File names `certs init` writes in its directory.
pub const CA_CERT: &str = "ca.pem";
pub const CA_KEY: &str = "ca-key.pem";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server-key.pem";

/// How long the private CA is valid.
const CA_DAYS: i64 = 10 * 365;
/// How long server and client certificates are valid.
const LEAF_DAYS: i64 = 2 * 365;

/// DNS name a spawner's client certificate carries: `<spawner id>.spawner.exile`. The master
/// compares it with the spawner id the credential names.
pub fn spawner_dns_name(spawner_id: &str) -> String {
    format!("{spawner_id}.spawner.exile")
}

/// A CA certificate and its key, in PEM.
#[derive(Clone)]
pub struct CaPem {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for CaPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaPem").finish_non_exhaustive()
    }
}

/// A leaf certificate: PEM cert and key, and its serial number in hex.
#[derive(Clone)]
pub struct Leaf {
    pub cert: String,
    pub key: String,
    pub serial_hex: String,
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for clocks a little behind.
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
}

/// A fresh random serial number (16 bytes, positive).
fn random_serial() -> (SerialNumber, String) {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    (SerialNumber::from_slice(&bytes), hex::encode(bytes))
}

/// Creates a new private CA named `name`.
pub fn new_ca(name: &str) -> Result<CaPem, String> {
    let key = KeyPair::generate().map_err(|e| err("cannot generate the CA key", e))?;
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| err("bad CA parameters", e))?;
    params.distinguished_name.push(DnType::CommonName, name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Exile");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial().0);
    validity(&mut params, CA_DAYS);
    let cert = params
        .self_signed(&key)
        .map_err(|e| err("cannot sign the CA certificate", e))?;
    Ok(CaPem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn issuer(ca: &CaPem) -> Result<Issuer<'static, KeyPair>, String> {
    let key = KeyPair::from_pem(&ca.key).map_err(|e| err("cannot read the CA key", e))?;
    Issuer::from_ca_cert_pem(&ca.cert, key).map_err(|e| err("cannot read the CA certificate", e))
}

/// Signs a certificate with `ca` for a fresh key.
fn sign(
    ca: &CaPem,
    common_name: &str,
    sans: &[String],
    usage: ExtendedKeyUsagePurpose,
) -> Result<Leaf, String> {
    let key = KeyPair::generate().map_err(|e| err("cannot generate a key", e))?;
    let mut params = CertificateParams::new(sans.to_vec())
        .map_err(|e| err("a name is not a valid DNS name or IP address", e))?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Exile");
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let (serial, serial_hex) = random_serial();
    params.serial_number = Some(serial);
    validity(&mut params, LEAF_DAYS);
    let cert = params
        .signed_by(&key, &issuer(ca)?)
        .map_err(|e| err("cannot sign the certificate", e))?;
    Ok(Leaf {
        cert: cert.pem(),
        key: key.serialize_pem(),
        serial_hex,
    })
}

/// A server certificate for `names` (host names and IP addresses) signed by `ca`.
pub fn server_cert(ca: &CaPem, names: &[String]) -> Result<Leaf, String> {
    if names.is_empty() {
        return Err("give at least one name the master is reached by (--san)".into());
    }
    sign(ca, &names[0], names, ExtendedKeyUsagePurpose::ServerAuth)
}

/// A client certificate for spawner `spawner_id` signed by `ca`.
pub fn spawner_cert(ca: &CaPem, spawner_id: &str) -> Result<Leaf, String> {
    sign(
        ca,
        spawner_id,
        &[spawner_dns_name(spawner_id)],
        ExtendedKeyUsagePurpose::ClientAuth,
    )
}

/// What a client certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// Serial number, lower-case hex without leading zero bytes stripped (as issued).
    pub serial_hex: String,
    /// DNS names it carries.
    pub dns_names: Vec<String>,
}

impl ClientIdentity {
    /// Reads the end-entity certificate `der`.
    pub fn parse(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| err("cannot parse the client certificate", e))?;
        let mut dns_names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(n) = name {
                    dns_names.push((*n).to_owned());
                }
            }
        }
        Ok(Self {
            serial_hex: hex::encode(cert.raw_serial()),
            dns_names,
        })
    }

    /// The spawner id this certificate was issued to, when it is a spawner certificate.
    pub fn spawner_id(&self) -> Option<&str> {
        self.dns_names
            .iter()
            .find_map(|n| n.strip_suffix(".spawner.exile"))
    }
}

/// Where `certs init` put things.
#[derive(Debug, Clone)]
pub struct InitPaths {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// `exile-master certs init`: a CA (reused when `dir` holds one already, so the server
/// certificate can be renewed for new names without re-trusting anything) and a server
/// certificate for `names`. Keys are written 0600.
pub fn init(dir: &Path, names: &[String]) -> Result<InitPaths, String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| err(&format!("cannot create {}", dir.display()), e))?;
    let paths = InitPaths {
        ca_cert: dir.join(CA_CERT),
        ca_key: dir.join(CA_KEY),
        server_cert: dir.join(SERVER_CERT),
        server_key: dir.join(SERVER_KEY),
    };
    let ca = if paths.ca_cert.is_file() && paths.ca_key.is_file() {
        load_ca(&paths.ca_cert, &paths.ca_key)?
    } else {
        let ca = new_ca("Exile private CA")?;
        write(&paths.ca_key, &ca.key, true)?;
        write(&paths.ca_cert, &ca.cert, false)?;
        ca
    };
    let leaf = server_cert(&ca, names)?;
    write(&paths.server_key, &leaf.key, true)?;
    write(&paths.server_cert, &leaf.cert, false)?;
    Ok(paths)
}

/// Reads a CA certificate and key from PEM files and checks they go together.
pub fn load_ca(cert: &Path, key: &Path) -> Result<CaPem, String> {
    let ca = CaPem {
        cert: std::fs::read_to_string(cert)
            .map_err(|e| err(&format!("cannot read {}", cert.display()), e))?,
        key: std::fs::read_to_string(key)
            .map_err(|e| err(&format!("cannot read {}", key.display()), e))?,
    };
    issuer(&ca)?;
    Ok(ca)
}

fn write(path: &Path, contents: &str, private: bool) -> Result<(), String> {
    let r = if private {
        exile_api::fs::write_private(path, contents.as_bytes())
    } else {
        std::fs::write(path, contents)
    };
    r.map_err(|e| err(&format!("cannot write {}", path.display()), e))
}

/// The names `--san` gave, split on commas, trimmed, without empties.
pub fn split_names(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `name` goes into a certificate as an IP address.
pub fn is_ip(name: &str) -> bool {
    name.parse::<std::net::IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_makes_a_ca_and_a_server_cert_with_private_keys() {
        let dir = tempfile::tempdir().unwrap();
        let names = split_names("exile.example, 10.0.0.5,,");
        assert_eq!(names, ["exile.example", "10.0.0.5"]);
        let p = init(dir.path(), &names).unwrap();
        use std::os::unix::fs::PermissionsExt;
        for key in [&p.ca_key, &p.server_key] {
            let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let ca_before = std::fs::read_to_string(&p.ca_cert).unwrap();
        // Again with other names: same CA, new server certificate.
        let server_before = std::fs::read_to_string(&p.server_cert).unwrap();
        init(dir.path(), &split_names("other.example")).unwrap();
        assert_eq!(std::fs::read_to_string(&p.ca_cert).unwrap(), ca_before);
        assert_ne!(
            std::fs::read_to_string(&p.server_cert).unwrap(),
            server_before
        );
        assert!(init(dir.path(), &[]).is_err());
    }

    #[test]
    fn spawner_certs_name_their_spawner_and_serial() {
        let ca = new_ca("test").unwrap();
        let leaf = spawner_cert(&ca, "spw-abc").unwrap();
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(leaf.cert.as_bytes()).unwrap();
        let id = ClientIdentity::parse(&der).unwrap();
        assert_eq!(id.spawner_id(), Some("spw-abc"));
        assert_eq!(id.serial_hex, leaf.serial_hex);
        assert!(ClientIdentity::parse(b"junk").is_err());
    }
}
