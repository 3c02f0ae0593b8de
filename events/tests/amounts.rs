//! The amount codec reads back whatever it writes: an event that was appended must decode, or
//! every projector stops at it (issue #23: a claim of 10^12 × 10^12 was written as
//! `9.223372036854776e16` and could never be read again).

use careledger_events::claims::Amount;
use proptest::prelude::*;

fn round_trip(amount: Amount) -> Result<Amount, serde_json::Error> {
    serde_json::from_value(serde_json::to_value(amount)?)
}

proptest! {
    #[test]
    fn every_amount_decodes(hundredths in any::<i64>()) {
        let decoded = round_trip(Amount(hundredths));
        prop_assert!(decoded.is_ok(), "{hundredths}: {decoded:?}");
    }

    /// Below 2^50 hundredths (eleven trillion) the double written is near enough to the decimal
    /// for `× 100` to round back to it; every claim total and allocation is below (the bounds).
    #[test]
    fn amounts_below_two_to_the_50_are_exact(hundredths in -(1i64 << 50)..(1i64 << 50)) {
        prop_assert_eq!(round_trip(Amount(hundredths)).unwrap(), Amount(hundredths));
    }

    #[test]
    fn whole_amounts_are_exact_at_any_size(units in (i64::MIN / 100)..=(i64::MAX / 100)) {
        prop_assert_eq!(round_trip(Amount(units * 100)).unwrap(), Amount(units * 100));
    }
}

#[test]
fn the_extremes_decode() {
    for hundredths in [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX] {
        assert!(round_trip(Amount(hundredths)).is_ok(), "{hundredths}");
    }
}

#[test]
fn what_is_no_number_is_refused() {
    assert!(serde_json::from_str::<Amount>("1e300").is_ok(), "saturates like any f64 beyond the range");
    assert!(serde_json::from_str::<Amount>("92233720368547758070").is_ok(), "read as a double, saturated");
    assert!(serde_json::from_str::<Amount>("\"12\"").is_err());
}

#[test]
fn the_bounds_keep_sql_products_and_claim_totals_in_range() {
    // qty × price in hundredths, as the claims projector multiplies them in SQL
    let product = i128::from(Amount::MAX_QUANTITY.0) * i128::from(Amount::MAX_PRICE.0);
    assert!(product < i128::from(i64::MAX));
    // 200 lines at the largest line value, and a valuation run's whole allocation: exact as JSON
    const { assert!(200 * Amount::MAX_LINE_VALUE.0 < 1 << 50) };
    const { assert!(Amount::MAX_ALLOCATION.0 < 1 << 50) };
}
