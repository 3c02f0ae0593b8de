//! The requisition number itself: eHealth's published algorithm, and the parser for numbers
//! people read out, type or send by SMS.
//!
//! digest = BLAKE2b (RFC 7693) with an 8-byte output, keyed with the configured key, over the
//! UTF-8 bytes of the encounter id followed by the salt; the digest read as a big-endian `u64`,
//! written in base 22 with [`ALPHABET`] (digits and the letters that look alike in Cyrillic and
//! Latin and are on a phone keypad), left-padded with `0` to 16 characters, grouped `XXXX-XXXX-
//! XXXX-XXXX`. Since 2^64 < 22^15, every number starts with `0`, and a text above `u64::MAX` can
//! never be a requisition number: the parser refuses it as malformed rather than look it up.

use blake2::Blake2bMac;
use blake2::digest::consts::U8;
use blake2::digest::{FixedOutput, Update};

/// The characters of a number, in digit order.
pub const ALPHABET: &[u8; 22] = b"0123456789ABCEHIKMOPTX";
/// eHealth's published key.
pub const DEFAULT_KEY: &str = "random";
/// Characters of a number without separators.
const DIGITS: usize = 16;
/// Characters per block between the `-` separators.
const BLOCK: usize = 4;
/// BLAKE2b takes keys of at most 64 bytes.
const MAX_KEY_BYTES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the requisition key must be at most {MAX_KEY_BYTES} bytes (BLAKE2b's limit), not {0}")]
    TooLong(usize),
}

/// The BLAKE2b key numbers are made with. Servers sharing a database must share it, or the
/// same encounter would get two numbers.
#[derive(Clone)]
pub struct RequisitionKey {
    bytes: Vec<u8>,
    /// Keyed once; each number starts from a copy.
    mac: Blake2bMac<U8>,
}

impl RequisitionKey {
    /// An empty key means unkeyed BLAKE2b (as RFC 7693 and Python's `hashlib` read it).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, KeyError> {
        let bytes = bytes.into();
        // checked here: blake2 0.11.0 lets keys up to a whole block (128) through, then panics
        if bytes.len() > MAX_KEY_BYTES {
            return Err(KeyError::TooLong(bytes.len()));
        }
        let key = (!bytes.is_empty()).then_some(bytes.as_slice());
        let mac =
            Blake2bMac::<U8>::new_with_salt_and_personal(key, &[], &[]).map_err(|_| KeyError::TooLong(bytes.len()))?;
        Ok(RequisitionKey { bytes, mac })
    }

    /// The number of an encounter with a salt (empty for the first try).
    pub fn number(&self, encounter_id: &str, salt: &str) -> RequisitionNumber {
        let mut mac = self.mac.clone();
        mac.update(encounter_id.as_bytes());
        mac.update(salt.as_bytes());
        let digest: [u8; 8] = mac.finalize_fixed().into();
        RequisitionNumber(u64::from_be_bytes(digest))
    }
}

impl Default for RequisitionKey {
    fn default() -> Self {
        // the default key is 6 bytes, well within the limit
        RequisitionKey::new(DEFAULT_KEY).unwrap_or_else(|_| unreachable!("the default key is valid"))
    }
}

impl PartialEq for RequisitionKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for RequisitionKey {}

impl std::fmt::Debug for RequisitionKey {
    // the key is a secret of the deployment: never printed
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequisitionKey({} bytes)", self.bytes.len())
    }
}

/// Why a text is not a requisition number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("expected 4 blocks of 4 characters joined by '-', e.g. 01CX-IHHT-TX63-02PI")]
    Shape,
    #[error("'{0}' is not one of 0123456789ABCEHIKMOPTX")]
    Character(char),
    #[error("no requisition number is that large (the largest is 02X4-XI10-4353-P8TI)")]
    OutOfRange,
}

/// A requisition number: the digest as a number, shown in its grouped base-22 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequisitionNumber(pub u64);

impl RequisitionNumber {
    /// Reads `XXXX-XXXX-XXXX-XXXX`; lower case is accepted (people type it so), nothing else.
    pub fn parse(text: &str) -> Result<Self, NumberError> {
        let bytes = text.as_bytes();
        if bytes.len() != DIGITS + DIGITS / BLOCK - 1 {
            return Err(NumberError::Shape);
        }
        let mut value: u64 = 0;
        for (i, &b) in bytes.iter().enumerate() {
            if i % (BLOCK + 1) == BLOCK {
                if b != b'-' {
                    return Err(NumberError::Shape);
                }
                continue;
            }
            let upper = b.to_ascii_uppercase();
            let digit = ALPHABET
                .iter()
                .position(|&a| a == upper)
                .ok_or_else(|| NumberError::Character(text.get(i..).and_then(|t| t.chars().next()).unwrap_or('?')))?;
            value = value.checked_mul(22).and_then(|v| v.checked_add(digit as u64)).ok_or(NumberError::OutOfRange)?;
        }
        Ok(RequisitionNumber(value))
    }

    /// The grouped text, e.g. `01CX-IHHT-TX63-02PI`.
    pub fn text(self) -> String {
        let mut digits = [b'0'; DIGITS];
        let mut n = self.0;
        for d in digits.iter_mut().rev() {
            *d = ALPHABET[(n % 22) as usize];
            n /= 22;
        }
        let mut text = String::with_capacity(DIGITS + DIGITS / BLOCK - 1);
        for (i, block) in digits.chunks(BLOCK).enumerate() {
            if i > 0 {
                text.push('-');
            }
            text.extend(block.iter().map(|&b| char::from(b)));
        }
        text
    }
}

impl std::fmt::Display for RequisitionNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text())
    }
}

impl std::str::FromStr for RequisitionNumber {
    type Err = NumberError;
    fn from_str(s: &str) -> Result<Self, NumberError> {
        RequisitionNumber::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn number(encounter: &str, salt: &str) -> String {
        RequisitionKey::default().number(encounter, salt).text()
    }

    #[test]
    fn the_issues_examples() {
        assert_eq!(number("7a1419b0-c53d-4df2-9c22-07de28d96ac0", ""), "01CX-IHHT-TX63-02PI");
        assert_eq!(number("00000000-0000-0000-0000-000000000000", ""), "0288-PE58-5XB5-2C1P");
    }

    #[test]
    fn agrees_with_python_hashlib_on_salts_keys_and_no_key() {
        // hashlib.blake2b(data, digest_size=8, key=key).digest(), as integers
        let k = RequisitionKey::default();
        assert_eq!(k.number("7a1419b0-c53d-4df2-9c22-07de28d96ac0", "salt1").0, 0x3b3bffa7d0b7abc5);
        assert_eq!(k.number("7a1419b0-c53d-4df2-9c22-07de28d96ac0", "salt1").text(), "00I2-0K06-2EP5-0IT1");
        assert_eq!(k.number("7a1419b0-c53d-4df2-9c22-07de28d96ac0", "").0, 9894651688303378473);
        let long = RequisitionKey::new(vec![b'k'; 64]).unwrap();
        assert_eq!(long.number("x", "").text(), "014I-85P3-O96E-62CE");
        let unkeyed = RequisitionKey::new(Vec::new()).unwrap();
        assert_eq!(unkeyed.number("abc", "").0, 0xd8bb14d833d59559);
        assert_eq!(RequisitionKey::new(vec![0; 65]).unwrap_err(), KeyError::TooLong(65));
        assert_eq!(RequisitionKey::new(vec![0; 129]).unwrap_err(), KeyError::TooLong(129));
        assert_eq!(format!("{:?}", RequisitionKey::default()), "RequisitionKey(6 bytes)");
    }

    #[test]
    fn text_is_exact_base_22_padded_and_grouped() {
        assert_eq!(RequisitionNumber(0).text(), "0000-0000-0000-0000");
        assert_eq!(RequisitionNumber(21).text(), "0000-0000-0000-000X");
        assert_eq!(RequisitionNumber(22).text(), "0000-0000-0000-0010");
        assert_eq!(RequisitionNumber(u64::MAX).text(), "02X4-XI10-4353-P8TI");
    }

    #[test]
    fn parser_refuses_what_is_not_a_number() {
        assert_eq!(RequisitionNumber::parse("01cx-ihht-tx63-02pi").unwrap().text(), "01CX-IHHT-TX63-02PI");
        assert_eq!(RequisitionNumber::parse("02X4-XI10-4353-P8TI"), Ok(RequisitionNumber(u64::MAX)));
        assert_eq!(RequisitionNumber::parse("02X4-XI10-4353-P8TK"), Err(NumberError::OutOfRange));
        assert_eq!(RequisitionNumber::parse("1000-0000-0000-0000"), Err(NumberError::OutOfRange));
        assert_eq!(RequisitionNumber::parse("01CXIHHTTX6302PI"), Err(NumberError::Shape));
        assert_eq!(RequisitionNumber::parse("01CX-IHHT-TX63-02P"), Err(NumberError::Shape));
        assert_eq!(RequisitionNumber::parse("01CX_IHHT-TX63-02PI"), Err(NumberError::Shape));
        assert_eq!(RequisitionNumber::parse("01CX-IHHT-TX63-02PD"), Err(NumberError::Character('D')));
        assert_eq!(RequisitionNumber::parse("01CX-IHHT-TX63-02Pé"), Err(NumberError::Shape));
        assert_eq!(RequisitionNumber::parse(""), Err(NumberError::Shape));
        assert_eq!("0288-PE58-5XB5-2C1P".parse::<RequisitionNumber>().unwrap().to_string(), "0288-PE58-5XB5-2C1P");
    }

    proptest! {
        #[test]
        fn every_number_is_16_characters_of_the_alphabet_in_4_blocks_and_parses_back(
            encounter in any::<u128>(), salt in "[0-9a-f]{0,16}",
        ) {
            let encounter = uuid::Uuid::from_u128(encounter).to_string();
            let n = RequisitionKey::default().number(&encounter, &salt);
            let text = n.text();
            prop_assert_eq!(text.len(), 19);
            let blocks: Vec<&str> = text.split('-').collect();
            prop_assert_eq!(blocks.len(), 4);
            prop_assert!(blocks.iter().all(|b| b.len() == 4 && b.bytes().all(|c| ALPHABET.contains(&c))));
            prop_assert!(text.starts_with('0'));
            prop_assert_eq!(RequisitionNumber::parse(&text), Ok(n));
            prop_assert_eq!(RequisitionNumber::parse(&text.to_lowercase()), Ok(n));
        }

        #[test]
        fn numbers_are_deterministic_and_depend_on_key_and_salt(encounter in any::<u128>(), key in "[a-z]{1,64}") {
            let encounter = uuid::Uuid::from_u128(encounter).to_string();
            let k = RequisitionKey::new(key.as_bytes()).unwrap();
            prop_assert_eq!(k.number(&encounter, ""), k.number(&encounter, ""));
            prop_assert_eq!(k.number(&encounter, "a"), RequisitionKey::new(key.as_bytes()).unwrap().number(&encounter, "a"));
            prop_assert_ne!(k.number(&encounter, ""), k.number(&encounter, "a"));
            if key != DEFAULT_KEY {
                prop_assert_ne!(k.number(&encounter, ""), RequisitionKey::default().number(&encounter, ""));
            }
        }

        #[test]
        fn every_u64_round_trips_through_its_text(n in any::<u64>()) {
            prop_assert_eq!(RequisitionNumber::parse(&RequisitionNumber(n).text()), Ok(RequisitionNumber(n)));
        }
    }
}
