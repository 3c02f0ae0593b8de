//! Sync files (issue #21, "By file"): what one careledger sends another on a USB stick or by mail
//! when there is no network, signed by its sender and encrypted to its receiver.
//!
//! A file is an [age](https://age-encryption.org/v1) file encrypted to the receiver's X25519
//! recipient; inside is the sender's signed envelope (JSON):
//! `{"header": "<JSON text>", "payload": "<base64>", "signature": "<base64>"}`, where the header
//! names the format, the sending server and the receiving server (their FHIR systems), and the
//! Ed25519 signature covers the format line, the header's exact text and the payload. Signing
//! inside the encryption, with the receiver named in what is signed, means that a file cannot be
//! re-encrypted to a third server and still pass as sent to it.
//!
//! [`open`] refuses, before the payload is looked at, a file that is not age or not for this
//! server's key, one whose ciphertext or envelope was changed, one signed by a key this server does
//! not know, and one signed for another server. No cryptography is written here: age (the `age`
//! crate, whose files the `age` tool opens too) and Ed25519 (`ed25519-dalek`) do it all.
//!
//! Keys ([`Keys`], [`PeerKey`]) are JSON files: the secret one stays in the data directory; the
//! public one is what servers exchange (`careledger sync keys`).

use std::str::FromStr;

use age::secrecy::ExposeSecret;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

/// What every sync file says it is (and what its signature covers first).
pub const FORMAT: &str = "careledger-sync/1";

/// Why a sync file or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncFileError {
    #[error("not a sync file for this server's key (not age, or encrypted to another key)")]
    NotForThisKey,
    #[error("the file was changed after it was written (its encryption or signature does not hold)")]
    Tampered,
    #[error("signed by {0}, whose key this server does not know")]
    UnknownSender(String),
    #[error("signed for {0}, not for this server")]
    ForAnotherServer(String),
    #[error("not a careledger sync file: {0}")]
    Malformed(String),
    #[error("invalid key file: {0}")]
    InvalidKey(String),
    #[error("cannot encrypt: {0}")]
    Encrypt(String),
}

/// This server's keys: it signs what it sends and opens what is sent to it.
pub struct Keys {
    /// This server's FHIR system (`CARELEDGER_FHIR_SYSTEM`): who it is to its peers.
    pub server: String,
    signing: SigningKey,
    identity: age::x25519::Identity,
}

/// A peer's public keys: checks what it signed and encrypts what is sent to it.
#[derive(Debug, Clone)]
pub struct PeerKey {
    pub server: String,
    verifying: VerifyingKey,
    recipient: age::x25519::Recipient,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretFile {
    format: String,
    server: String,
    signing_key: String,
    age_identity: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicFile {
    format: String,
    server: String,
    verifying_key: String,
    age_recipient: String,
}

fn invalid_key(why: impl std::fmt::Display) -> SyncFileError {
    SyncFileError::InvalidKey(why.to_string())
}

/// A key file's Ed25519 key (`name`, 32 bytes of base64), once its format is this one.
fn key_bytes(format: &str, key: &str, name: &str) -> Result<[u8; 32], SyncFileError> {
    if format != FORMAT {
        return Err(invalid_key(format!("format {format} is not {FORMAT}")));
    }
    B64.decode(key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| invalid_key(format!("{name} is not 32 bytes of base64")))
}

impl Keys {
    /// New keys for `server`, from the operating system's randomness.
    pub fn generate(server: &str) -> Keys {
        Keys {
            server: server.to_string(),
            signing: SigningKey::generate(&mut rand_core::OsRng),
            identity: age::x25519::Identity::generate(),
        }
    }

    /// The secret key file (keep it in the data directory, readable by the service alone).
    pub fn to_secret_file(&self) -> String {
        let file = SecretFile {
            format: FORMAT.into(),
            server: self.server.clone(),
            signing_key: B64.encode(self.signing.to_bytes()),
            age_identity: self.identity.to_string().expose_secret().to_string(),
        };
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    pub fn from_secret_file(text: &str) -> Result<Keys, SyncFileError> {
        let file: SecretFile = serde_json::from_str(text).map_err(invalid_key)?;
        let bytes = key_bytes(&file.format, &file.signing_key, "signing_key")?;
        let identity = age::x25519::Identity::from_str(&file.age_identity).map_err(invalid_key)?;
        Ok(Keys { server: file.server, signing: SigningKey::from_bytes(&bytes), identity })
    }

    /// The public half, as peers know it.
    pub fn public(&self) -> PeerKey {
        PeerKey {
            server: self.server.clone(),
            verifying: self.signing.verifying_key(),
            recipient: self.identity.to_public(),
        }
    }
}

impl PeerKey {
    /// The public key file a server gives its peers.
    pub fn to_file(&self) -> String {
        let file = PublicFile {
            format: FORMAT.into(),
            server: self.server.clone(),
            verifying_key: B64.encode(self.verifying.to_bytes()),
            age_recipient: self.recipient.to_string(),
        };
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    pub fn from_file(text: &str) -> Result<PeerKey, SyncFileError> {
        let file: PublicFile = serde_json::from_str(text).map_err(invalid_key)?;
        let bytes = key_bytes(&file.format, &file.verifying_key, "verifying_key")?;
        let verifying = VerifyingKey::from_bytes(&bytes).map_err(invalid_key)?;
        if verifying.is_weak() {
            return Err(invalid_key("verifying_key is a weak (small-order) key"));
        }
        let recipient = age::x25519::Recipient::from_str(&file.age_recipient).map_err(invalid_key)?;
        Ok(PeerKey { server: file.server, verifying, recipient })
    }

    /// The age recipient (`age1...`), with which the `age` tool encrypts to this server too.
    pub fn age_recipient(&self) -> String {
        self.recipient.to_string()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    from: String,
    to: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    header: String,
    payload: String,
    signature: String,
}

/// What the signature covers: the format, the header's exact text and the payload, each
/// length-prefixed so that no byte can move from one to the other.
fn signed_bytes(header: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(FORMAT.len() + header.len() + payload.len() + 24);
    for part in [FORMAT.as_bytes(), header.as_bytes(), payload] {
        out.extend((part.len() as u64).to_be_bytes());
        out.extend(part);
    }
    out
}

/// `payload` signed by `from` and encrypted to `to`: the bytes of the sync file.
pub fn seal(payload: &[u8], from: &Keys, to: &PeerKey) -> Result<Vec<u8>, SyncFileError> {
    let header = Header { format: FORMAT.into(), from: from.server.clone(), to: to.server.clone() };
    let header = serde_json::to_string(&header).map_err(|e| SyncFileError::Encrypt(e.to_string()))?;
    let signature = from.signing.sign(&signed_bytes(&header, payload));
    let envelope = Envelope { header, payload: B64.encode(payload), signature: B64.encode(signature.to_bytes()) };
    let plaintext = serde_json::to_vec(&envelope).map_err(|e| SyncFileError::Encrypt(e.to_string()))?;
    age::encrypt(&to.recipient, &plaintext).map_err(|e| SyncFileError::Encrypt(e.to_string()))
}

/// What a sync file held, once every check passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The sending server (a peer of `peers`).
    pub from: String,
    pub payload: Vec<u8>,
}

/// Opens a sync file sent to `own` by one of `peers`, or says why it is refused.
pub fn open(file: &[u8], own: &Keys, peers: &[PeerKey]) -> Result<Opened, SyncFileError> {
    let plaintext = age::decrypt(&own.identity, file).map_err(|e| match e {
        // a file encrypted to other keys, or not an age file at all
        age::DecryptError::NoMatchingKeys | age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => {
            SyncFileError::NotForThisKey
        }
        // a header MAC or a payload chunk that does not authenticate, a file cut short
        _ => SyncFileError::Tampered,
    })?;
    let envelope: Envelope = serde_json::from_slice(&plaintext).map_err(|e| SyncFileError::Malformed(e.to_string()))?;
    let header: Header = serde_json::from_str(&envelope.header).map_err(|e| SyncFileError::Malformed(e.to_string()))?;
    if header.format != FORMAT {
        return Err(SyncFileError::Malformed(format!("format {} is not {FORMAT}", header.format)));
    }
    let payload = B64.decode(&envelope.payload).map_err(|_| SyncFileError::Tampered)?;
    let signature = B64
        .decode(&envelope.signature)
        .ok()
        .and_then(|b| Signature::from_slice(&b).ok())
        .ok_or(SyncFileError::Tampered)?;
    // every key this server was given for the sender (old and new, across a key change)
    let mut keys = peers.iter().filter(|p| p.server == header.from).peekable();
    if keys.peek().is_none() {
        return Err(SyncFileError::UnknownSender(header.from));
    }
    let signed = signed_bytes(&envelope.header, &payload);
    if !keys.any(|peer| peer.verifying.verify_strict(&signed, &signature).is_ok()) {
        return Err(SyncFileError::Tampered);
    }
    if header.to != own.server {
        return Err(SyncFileError::ForAnotherServer(header.to));
    }
    Ok(Opened { from: header.from, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = "urn:uuid:0190f3a0-0000-7000-8000-00000000000a";
    const CENTRAL: &str = "urn:uuid:0190f3a0-0000-7000-8000-00000000000c";

    #[test]
    fn a_sealed_file_opens_for_its_receiver_only() {
        let (node, central, other) = (Keys::generate(NODE), Keys::generate(CENTRAL), Keys::generate("urn:x:other"));
        let bundle = br#"{"resourceType":"Bundle","type":"transaction"}"#;
        let file = seal(bundle, &node, &central.public()).unwrap();
        assert!(!file.windows(10).any(|w| w == b"resourceTy"), "the payload is not readable in the file");
        let opened = open(&file, &central, &[node.public()]).unwrap();
        assert_eq!((opened.from.as_str(), opened.payload.as_slice()), (NODE, &bundle[..]));

        // another server's key cannot open it
        assert_eq!(open(&file, &other, &[node.public()]), Err(SyncFileError::NotForThisKey));
        // a sender the receiver does not know
        assert_eq!(open(&file, &central, &[other.public()]), Err(SyncFileError::UnknownSender(NODE.into())));
        // garbage
        assert_eq!(open(b"not a sync file", &central, &[node.public()]), Err(SyncFileError::NotForThisKey));
    }

    #[test]
    fn any_changed_byte_is_refused() {
        let (node, central) = (Keys::generate(NODE), Keys::generate(CENTRAL));
        let file = seal(&[7u8; 5000], &node, &central.public()).unwrap();
        // the age header, the first payload chunk, the end
        for at in [40, file.len() / 2, file.len() - 1] {
            let mut changed = file.clone();
            changed[at] ^= 0x01;
            let refused = open(&changed, &central, &[node.public()]);
            assert!(
                matches!(refused, Err(SyncFileError::Tampered | SyncFileError::NotForThisKey)),
                "byte {at}: {refused:?}"
            );
        }
        let mut cut = file.clone();
        cut.truncate(file.len() - 10);
        assert!(open(&cut, &central, &[node.public()]).is_err());
    }

    #[test]
    fn a_signature_holds_only_for_what_was_signed() {
        let (node, central, impostor) = (Keys::generate(NODE), Keys::generate(CENTRAL), Keys::generate(NODE));
        // someone holding central's public key (everyone may) writes a file claiming to be the node
        let forged = seal(b"{}", &impostor, &central.public()).unwrap();
        assert_eq!(open(&forged, &central, &[node.public()]), Err(SyncFileError::Tampered));
        // central re-encrypts a file the node sent it to a third server: signed for central, refused
        let third = Keys::generate("urn:x:third");
        let envelope = age::decrypt(&central.identity, &seal(b"{}", &node, &central.public()).unwrap()).unwrap();
        let forwarded = age::encrypt(&third.public().recipient, &envelope).unwrap();
        assert_eq!(open(&forwarded, &third, &[node.public()]), Err(SyncFileError::ForAnotherServer(CENTRAL.into())));
        // the payload swapped inside a re-encrypted envelope
        let mut inner: serde_json::Value = serde_json::from_slice(&envelope).unwrap();
        inner["payload"] = serde_json::json!(B64.encode(b"{\"x\":1}"));
        let swapped = age::encrypt(&central.public().recipient, &serde_json::to_vec(&inner).unwrap()).unwrap();
        assert_eq!(open(&swapped, &central, &[node.public()]), Err(SyncFileError::Tampered));
    }

    #[test]
    fn a_sender_that_changed_its_keys_is_known_by_both() {
        let (old, new, central) = (Keys::generate(NODE), Keys::generate(NODE), Keys::generate(CENTRAL));
        let peers = [old.public(), new.public()];
        for sender in [&old, &new] {
            let file = seal(b"{}", sender, &central.public()).unwrap();
            assert_eq!(open(&file, &central, &peers).unwrap().from, NODE);
        }
    }

    #[test]
    fn key_files_round_trip_and_bad_ones_are_refused() {
        let keys = Keys::generate(NODE);
        let again = Keys::from_secret_file(&keys.to_secret_file()).unwrap();
        let public = PeerKey::from_file(&keys.public().to_file()).unwrap();
        let file = seal(b"x", &Keys::generate(CENTRAL), &public).unwrap();
        assert_eq!(open(&file, &again, &[Keys::generate(CENTRAL).public()]).map(|o| o.payload).ok(), None);
        let central = Keys::generate(CENTRAL);
        let file = seal(b"x", &central, &public).unwrap();
        assert_eq!(open(&file, &again, &[central.public()]).unwrap().payload, b"x");
        assert!(matches!(PeerKey::from_file("{}"), Err(SyncFileError::InvalidKey(_))));
        assert!(matches!(Keys::from_secret_file(&keys.public().to_file()), Err(SyncFileError::InvalidKey(_))));
        let mut bad: serde_json::Value = serde_json::from_str(&keys.public().to_file()).unwrap();
        bad["verifying_key"] = serde_json::json!("AAAA");
        assert!(matches!(PeerKey::from_file(&bad.to_string()), Err(SyncFileError::InvalidKey(_))));
        assert!(keys.public().age_recipient().starts_with("age1"));
    }
}
