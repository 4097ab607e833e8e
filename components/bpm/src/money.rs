//! Amounts and the arithmetic of a transaction, in integer minor units
//! (cents): no floats anywhere, overflow checked.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// What a transaction does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Money into `accountId`.
    Deposit,
    /// Money out of `accountId`.
    Withdrawal,
    /// Money from `accountId` to `toAccountId`.
    Transfer,
}

impl Kind {
    /// The name stored and shown: `deposit`, `withdrawal`, `transfer`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Deposit => "deposit",
            Kind::Withdrawal => "withdrawal",
            Kind::Transfer => "transfer",
        }
    }

    /// The kind named `name`, as stored.
    pub fn parse(name: &str) -> Option<Kind> {
        match name {
            "deposit" => Some(Kind::Deposit),
            "withdrawal" => Some(Kind::Withdrawal),
            "transfer" => Some(Kind::Transfer),
            _ => None,
        }
    }
}

/// A request's `amount`: a JSON integer from 1 to `i64::MAX` minor units.
/// Fractions (`1.5`, and `10.0` too), strings and anything else are refused
/// with a message naming the rule.
pub fn parse_amount(value: &Json) -> Result<i64, String> {
    const RULE: &str =
        "amount must be a positive whole number of minor units (cents), such as 1250";
    let Json::Number(number) = value else {
        return Err(RULE.into());
    };
    if let Some(amount) = number.as_i64() {
        return if amount > 0 {
            Ok(amount)
        } else {
            Err(RULE.into())
        };
    }
    if number.is_u64() {
        return Err(format!("amount must be at most {}", i64::MAX));
    }
    Err(RULE.into())
}

/// Why a transaction cannot go through.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The source account holds less than the amount.
    InsufficientFunds,
    /// A balance would pass `i64::MAX`.
    Overflow,
}

/// The balances after moving `amount`: `from` is `accountId`'s balance,
/// `to` `toAccountId`'s (transfers only). Returns the new
/// `(from, to)` balances.
pub fn settle(
    kind: Kind,
    amount: i64,
    from: i64,
    to: Option<i64>,
) -> Result<(i64, Option<i64>), Refusal> {
    match kind {
        Kind::Deposit => Ok((from.checked_add(amount).ok_or(Refusal::Overflow)?, None)),
        Kind::Withdrawal => Ok((take(from, amount)?, None)),
        Kind::Transfer => {
            let from_after = take(from, amount)?;
            let to_after = to
                .unwrap_or(0)
                .checked_add(amount)
                .ok_or(Refusal::Overflow)?;
            Ok((from_after, Some(to_after)))
        }
    }
}

fn take(balance: i64, amount: i64) -> Result<i64, Refusal> {
    if amount > balance {
        return Err(Refusal::InsufficientFunds);
    }
    balance
        .checked_sub(amount)
        .ok_or(Refusal::InsufficientFunds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_are_positive_integers() {
        assert_eq!(parse_amount(&json!(1)), Ok(1));
        assert_eq!(parse_amount(&json!(1250)), Ok(1250));
        assert_eq!(parse_amount(&json!(i64::MAX)), Ok(i64::MAX));
        for bad in [
            json!(0),
            json!(-5),
            json!(1.5),
            json!(10.0),
            json!(1e3),
            json!("100"),
            json!(null),
            json!(true),
            json!([1]),
            json!({"cents": 1}),
        ] {
            let message = parse_amount(&bad).expect_err("refused");
            assert!(message.starts_with("amount"), "{bad}: {message}");
        }
        assert!(parse_amount(&json!(u64::MAX))
            .expect_err("too big")
            .contains("at most"));
    }

    #[test]
    fn amounts_parse_from_raw_json() {
        let parse = |text: &str| parse_amount(&serde_json::from_str(text).expect("JSON"));
        assert_eq!(parse("42"), Ok(42));
        assert!(parse("42.0").is_err());
        assert!(parse("4.2e1").is_err());
        assert!(parse("99999999999999999999").is_err());
    }

    #[test]
    fn kinds_by_name() {
        for kind in [Kind::Deposit, Kind::Withdrawal, Kind::Transfer] {
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).expect("serialises"),
                json!(kind.as_str())
            );
        }
        assert_eq!(Kind::parse("refund"), None);
    }

    #[test]
    fn deposits_add_and_check_overflow() {
        assert_eq!(settle(Kind::Deposit, 5, 10, None), Ok((15, None)));
        assert_eq!(
            settle(Kind::Deposit, 1, i64::MAX, None),
            Err(Refusal::Overflow)
        );
    }

    #[test]
    fn withdrawals_never_overdraw() {
        assert_eq!(settle(Kind::Withdrawal, 10, 10, None), Ok((0, None)));
        assert_eq!(
            settle(Kind::Withdrawal, 11, 10, None),
            Err(Refusal::InsufficientFunds)
        );
    }

    #[test]
    fn transfers_move_both_balances() {
        assert_eq!(settle(Kind::Transfer, 30, 100, Some(5)), Ok((70, Some(35))));
        assert_eq!(
            settle(Kind::Transfer, 101, 100, Some(5)),
            Err(Refusal::InsufficientFunds)
        );
        assert_eq!(
            settle(Kind::Transfer, 10, 100, Some(i64::MAX - 5)),
            Err(Refusal::Overflow)
        );
    }
}
