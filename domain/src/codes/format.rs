//! CHFID format: `prefix` + `length` digits, the last a check digit over the others.
//!
//! Two schemes, as openIMIS' `validate_insuree_number`: with modulo root 10 the check digit is a
//! Luhn digit over the base digits counted from the left; with any other root `m` it is
//! `base mod m` (root 7 is the legacy and insuree_batch scheme).
//!
//! Generated bases never start with 0: printers and spreadsheets drop leading zeros.

use careledger_events::codes::CodeFormat;
use rand::{Rng, RngExt};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("code length must be 3 to 18 digits")]
    Length,
    #[error("modulo root must be 2 to 10")]
    Modulo,
    #[error("prefix must be at most 10 ASCII letters or digits")]
    Prefix,
}

pub trait CodeFormatExt {
    /// Checks the format's own parameters.
    fn check(&self) -> Result<(), FormatError>;
    /// How many distinct codes the format can produce.
    fn space(&self) -> u64;
    /// The check digit of a base number.
    fn check_digit(&self, base: u64) -> u8;
    /// A random valid code's number (base and check digit).
    fn random_number<R: Rng + ?Sized>(&self, rng: &mut R) -> u64;
    /// The text of a code number: prefix and zero-padded digits.
    fn render(&self, number: u64) -> String;
    /// The number of a code text, if it is a valid code of this format.
    fn parse(&self, code: &str) -> Option<u64>;
    fn is_valid(&self, code: &str) -> bool {
        self.parse(code).is_some()
    }
}

fn pow10(n: u32) -> u64 {
    10u64.pow(n)
}

impl CodeFormatExt for CodeFormat {
    fn check(&self) -> Result<(), FormatError> {
        if !(3..=18).contains(&self.length) {
            return Err(FormatError::Length);
        }
        if !(2..=10).contains(&self.modulo) {
            return Err(FormatError::Modulo);
        }
        if self.prefix.len() > 10 || !self.prefix.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(FormatError::Prefix);
        }
        Ok(())
    }

    fn space(&self) -> u64 {
        // bases of length-1 digits with a non-zero first digit
        9 * pow10(self.length - 2)
    }

    fn check_digit(&self, base: u64) -> u8 {
        if self.modulo == 10 {
            let digits = base.to_string();
            let sum: u32 = digits
                .bytes()
                .map(|b| u32::from(b - b'0'))
                .enumerate()
                .map(|(i, d)| if i % 2 == 0 { if d > 4 { 2 * d - 9 } else { 2 * d } } else { d })
                .sum();
            ((10 - sum % 10) % 10) as u8
        } else {
            (base % u64::from(self.modulo)) as u8
        }
    }

    fn random_number<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        let low = pow10(self.length - 2);
        let base = rng.random_range(low..10 * low);
        base * 10 + u64::from(self.check_digit(base))
    }

    fn render(&self, number: u64) -> String {
        format!("{}{:0width$}", self.prefix, number, width = self.length as usize)
    }

    fn parse(&self, code: &str) -> Option<u64> {
        let digits = code.strip_prefix(self.prefix.as_str())?;
        if digits.len() != self.length as usize || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let number: u64 = digits.parse().ok()?;
        let (base, check) = (number / 10, (number % 10) as u8);
        (self.check_digit(base) == check).then_some(number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn fmt(length: u32, modulo: u32, prefix: &str) -> CodeFormat {
        CodeFormat { length, modulo, prefix: prefix.into() }
    }

    #[test]
    fn legacy_modulo_7_is_the_first_eight_digits_mod_7() {
        let f = CodeFormat::default();
        // 12345678 = 7 * 1763668 + 2
        assert!(f.is_valid("123456782"));
        assert!(!f.is_valid("123456781"));
        assert!(!f.is_valid("12345678"));
        assert!(!f.is_valid("12345678a"));
    }

    #[test]
    fn modulo_10_is_openimis_luhn_from_the_left() {
        let f = fmt(9, 10, "");
        // base 12345678: doubled at even indexes 1,3,5,7 -> 2,6,10-9=1,14-9=5 ; others 2,4,6,8
        // sum = 2+2+6+4+1+6+5+8 = 34 -> check digit 6
        assert_eq!(f.check_digit(12345678), 6);
        assert!(f.is_valid("123456786"));
        assert!(!f.is_valid("123456780"));
    }

    #[test]
    fn prefix_is_part_of_the_code() {
        let f = fmt(9, 7, "TZ");
        assert!(f.is_valid("TZ123456782"));
        assert!(!f.is_valid("123456782"));
        assert_eq!(f.render(123456782), "TZ123456782");
    }

    proptest! {
        #[test]
        fn every_generated_code_passes_the_validator(
            seed in any::<u64>(), length in 3u32..=18, modulo in 2u32..=10,
        ) {
            let f = fmt(length, modulo, "X");
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            for _ in 0..50 {
                let n = f.random_number(&mut rng);
                let code = f.render(n);
                prop_assert_eq!(code.len(), 1 + length as usize);
                prop_assert!(!code[1..].starts_with('0'));
                prop_assert_eq!(f.parse(&code), Some(n));
            }
        }

        #[test]
        fn a_changed_check_digit_is_refused(seed in any::<u64>(), modulo in 2u32..=10) {
            let f = fmt(9, modulo, "");
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let n = f.random_number(&mut rng);
            let wrong = (n / 10) * 10 + (n % 10 + 1) % 10;
            // with modulo < 10 some digits can never be check digits; with 10 every other is wrong
            prop_assert!(f.parse(&f.render(wrong)).is_none());
        }
    }
}
